"""ShuffleNet v1 and v2: grouped and depthwise convolutions made cheap, channel shuffle makes them talk.

- X. Zhang, X. Zhou, M. Lin, J. Sun (2018). "ShuffleNet: An Extremely Efficient Convolutional Neural Network
  for Mobile Devices". CVPR 2018. The idea: in a MobileNet-style block the 1x1 convolutions cost almost
  everything, so make them *grouped* (g groups: 1/g of the cost). Stacked grouped convolutions would keep
  every group's information inside that group, so between them the channels are *shuffled*: each group of the
  next layer receives channels from every group of the previous one.
- N. Ma, X. Zhang, H.-T. Zheng, J. Sun (2018). "ShuffleNet V2: Practical Guidelines for Efficient CNN
  Architecture Design". ECCV 2018. The idea: FLOPs are not speed. Memory access and fragmentation count too,
  so v2 follows four guidelines (equal input/output widths, no grouped 1x1 convs, few branches, few
  element-wise ops): a block splits its channels in two, leaves one half alone, runs the other through
  1x1 - depthwise 3x3 - 1x1 at constant width, concatenates, and shuffles the halves together.

**Channel shuffle**, written out (:func:`channel_shuffle`): with g groups of n channels, reshape the channels
to a g x n grid, transpose it to n x g and flatten again. Channel j of group i lands at position j * g + i, so
the next grouped layer's group k sees channels k*n/g..(k+1)*n/g-1 of *every* old group: one channel from each.
No weights, no arithmetic, only a permutation.

v2's keys are torchvision's (``conv1``, ``stage2.0.branch1``, ``stage2.0.branch2``, ``conv5``, ``fc``), so its
weights load strictly. v1 (no torchvision twin) uses the same layout: ``conv1``, ``maxpool``, ``stage2..4``,
``fc``. ``stem="cifar"``: the first conv has stride 1 and there is no max-pool (total stride 8, not 32).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from zoo.errors import ZooError
from zoo.models.layers import check_input_size, check_stem
from zoo.registry import register_model


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """N x C x H x W -> the same channels in the order that interleaves the ``groups`` groups.

    [a0 a1 a2 | b0 b1 b2] with 2 groups becomes [a0 b0 a1 b1 a2 b2].
    """
    n, c, h, w = x.shape
    x = x.view(n, groups, c // groups, h, w)  # N x g x C/g x H x W: the channels as a g x C/g grid
    x = x.transpose(1, 2).contiguous()  # N x C/g x g x H x W: transposed
    return x.view(n, c, h, w)  # flattened again: one channel of each group after the other


def _stem(in_channels: int, out: int, stem: str) -> tuple[nn.Sequential, nn.Module]:
    """3x3 conv - BN - ReLU (stride 2, or 1 for the cifar stem) and the 3x3/2 max-pool (none for cifar)."""
    check_stem(stem)
    stride = 2 if stem == "imagenet" else 1
    conv1 = nn.Sequential(nn.Conv2d(in_channels, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out),
                          nn.ReLU(inplace=True))
    return conv1, nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()


# ------------------------------------------------------------------------------------------------------------
# ShuffleNet v2
# ------------------------------------------------------------------------------------------------------------
def _depthwise(c_in: int, c_out: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False, groups=c_in)


class InvertedResidual(nn.Module):
    """ShuffleNet v2 unit (paper Fig. 3 c, d). Stride 1: split the channels in two, keep one half, transform
    the other (1x1 - BN - ReLU - dw 3x3 - BN - 1x1 - BN - ReLU), concatenate, shuffle. Stride 2: both branches
    see the whole input (the left one dw 3x3/2 - BN - 1x1 - BN - ReLU), so the width doubles."""

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ZooError(f"stride must be 1 or 2; got {stride}")
        self.stride = stride
        branch = oup // 2
        if stride == 1 and inp != branch * 2:
            raise ZooError(f"a stride-1 unit keeps its width; got {inp} -> {oup}")
        self.branch1 = nn.Sequential()
        if stride > 1:
            self.branch1 = nn.Sequential(
                _depthwise(inp, inp, stride), nn.BatchNorm2d(inp),
                nn.Conv2d(inp, branch, 1, bias=False), nn.BatchNorm2d(branch), nn.ReLU(inplace=True),
            )  # fmt: skip
        c = inp if stride > 1 else branch
        self.branch2 = nn.Sequential(
            nn.Conv2d(c, branch, 1, bias=False), nn.BatchNorm2d(branch), nn.ReLU(inplace=True),
            _depthwise(branch, branch, stride), nn.BatchNorm2d(branch),
            nn.Conv2d(branch, branch, 1, bias=False), nn.BatchNorm2d(branch), nn.ReLU(inplace=True),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)  # channel split: N x C/2 x H x W each
            out = torch.cat((x1, self.branch2(x2)), dim=1)  # half passes unchanged: a free shortcut
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)  # N x oup x H/2 x W/2
        return channel_shuffle(out, 2)  # mix the halves for the next unit's split


class ShuffleNetV2(nn.Module):
    """conv1 3x3/2 (24) - max-pool - stages 2, 3, 4 (4, 8, 4 units; the first of each with stride 2) -
    conv5 1x1 - global average pool - fc. ``stages_out_channels``: widths of conv1, the stages and conv5."""

    min_size: int | None = None  # from @register_model(min_size=...), set when built by name

    def __init__(self, stages_repeats: list[int], stages_out_channels: list[int], num_classes: int = 1000,
                 in_channels: int = 3, stem: str = "imagenet") -> None:
        super().__init__()
        if len(stages_repeats) != 3 or len(stages_out_channels) != 5:
            raise ZooError("ShuffleNetV2 takes 3 stage repeats and 5 widths (conv1, three stages, conv5)")
        self.stem = stem
        c = stages_out_channels[0]
        self.conv1, self.maxpool = _stem(in_channels, c, stem)
        for i, (repeats, out) in enumerate(zip(stages_repeats, stages_out_channels[1:4]), start=2):
            units = [InvertedResidual(c, out, 2)] + [InvertedResidual(out, out, 1) for _ in range(repeats - 1)]
            setattr(self, f"stage{i}", nn.Sequential(*units))
            c = out
        self.num_features = stages_out_channels[-1]
        self.conv5 = nn.Sequential(nn.Conv2d(c, self.num_features, 1, bias=False),
                                   nn.BatchNorm2d(self.num_features), nn.ReLU(inplace=True))
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        x = check_input_size(x, self.min_size, f"ShuffleNet v2 (stem={self.stem})")
        x = self.maxpool(self.conv1(x))  # N x 24 x 56 x 56 (224 input)
        x = self.stage2(x)  # N x 116 x 28 x 28 (x1.0)
        x = self.stage3(x)  # N x 232 x 14 x 14
        x = self.stage4(x)  # N x 464 x 7 x 7
        return self.conv5(x)  # N x 1024 x 7 x 7

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(x.mean([2, 3]))  # global average pool: N x 1024 -> N x num_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes)


_V2 = dict(family="shufflenet_v2", paper="Ma et al., ShuffleNet V2: Practical Guidelines for Efficient CNN "
           "Architecture Design", year=2018, min_size={"imagenet": 32, "cifar": 8})  # the last map is 1x1


@register_model(**_V2, torchvision="shufflenet_v2_x0_5")
def shufflenet_v2_x0_5(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ShuffleNetV2:
    return ShuffleNetV2([4, 8, 4], [24, 48, 96, 192, 1024], num_classes, in_channels, **kwargs)


@register_model(**_V2, torchvision="shufflenet_v2_x1_0")
def shufflenet_v2_x1_0(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ShuffleNetV2:
    return ShuffleNetV2([4, 8, 4], [24, 116, 232, 464, 1024], num_classes, in_channels, **kwargs)


@register_model(**_V2, torchvision="shufflenet_v2_x1_5")
def shufflenet_v2_x1_5(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ShuffleNetV2:
    return ShuffleNetV2([4, 8, 4], [24, 176, 352, 704, 1024], num_classes, in_channels, **kwargs)


@register_model(**_V2, torchvision="shufflenet_v2_x2_0")
def shufflenet_v2_x2_0(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ShuffleNetV2:
    return ShuffleNetV2([4, 8, 4], [24, 244, 488, 976, 2048], num_classes, in_channels, **kwargs)


# ------------------------------------------------------------------------------------------------------------
# ShuffleNet v1
# ------------------------------------------------------------------------------------------------------------
# Output widths of stages 2, 3, 4 at width 1x for g = 1, 2, 3, 4, 8 groups (paper Table 1): the widths grow
# with g so that every variant costs about 140M MACs at 224 (Table 2: 143M, 140M, 137M, 133M, 137M).
V1_WIDTHS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088), 8: (384, 768, 1536)}


class ShuffleUnit(nn.Module):
    """ShuffleNet v1 unit (paper Fig. 2 b, c): 1x1 group conv - BN - ReLU - channel shuffle - dw 3x3 - BN -
    1x1 group conv - BN, plus the input (stride 1), or concatenated with a 3x3/2 average pool of the input
    (stride 2, so the width grows without a projection); ReLU after. The bottleneck is a quarter of the
    output width. ``first_group=False`` (stage 2's first unit): its first 1x1 is not grouped, since 24 input
    channels are too few to split (the paper's note to Table 1)."""

    def __init__(self, inp: int, oup: int, groups: int, stride: int, first_group: bool = True) -> None:
        super().__init__()
        self.stride, self.groups = stride, groups
        mid = oup // 4
        branch = oup - inp if stride == 2 else oup  # stride 2: the pooled input fills the other channels
        g1 = groups if first_group else 1
        self.gconv1 = nn.Conv2d(inp, mid, 1, groups=g1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.dwconv = _depthwise(mid, mid, stride)
        self.bn2 = nn.BatchNorm2d(mid)
        self.gconv2 = nn.Conv2d(mid, branch, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(branch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.gconv1(x)))  # N x mid x H x W, each group from its own inputs
        out = channel_shuffle(out, self.groups) if self.groups > 1 else out  # let the groups exchange channels
        out = self.bn2(self.dwconv(out))  # N x mid x H/s x W/s, no ReLU after the depthwise conv
        out = self.bn3(self.gconv2(out))  # N x branch x H/s x W/s
        if self.stride == 2:
            return torch.cat((self.shortcut(x), self.relu(out)), dim=1)  # N x oup x H/2 x W/2
        return self.relu(out + x)


class ShuffleNetV1(nn.Module):
    """conv1 3x3/2 (24) - max-pool - stages 2, 3, 4 (4, 8, 4 units; the first of each with stride 2) -
    global average pool - fc."""

    min_size: int | None = None  # from @register_model(min_size=...), set when built by name

    def __init__(self, groups: int = 3, num_classes: int = 1000, in_channels: int = 3, stem: str = "imagenet",
                 stages_repeats: tuple[int, int, int] = (4, 8, 4)) -> None:
        super().__init__()
        if groups not in V1_WIDTHS:
            raise ZooError(f"ShuffleNet v1 has groups {', '.join(map(str, V1_WIDTHS))}; got {groups}")
        self.stem, self.groups = stem, groups
        self.conv1, self.maxpool = _stem(in_channels, 24, stem)
        c = 24
        for i, (repeats, out) in enumerate(zip(stages_repeats, V1_WIDTHS[groups]), start=2):
            units = [ShuffleUnit(c, out, groups, 2, first_group=i > 2)]
            units += [ShuffleUnit(out, out, groups, 1) for _ in range(repeats - 1)]
            setattr(self, f"stage{i}", nn.Sequential(*units))
            c = out
        self.num_features = c
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> Tensor:
        x = check_input_size(x, self.min_size, f"ShuffleNet v1 (stem={self.stem})")
        x = self.maxpool(self.conv1(x))  # N x 24 x 56 x 56 (224 input)
        x = self.stage2(x)  # N x 240 x 28 x 28 (g = 3)
        x = self.stage3(x)  # N x 480 x 14 x 14
        return self.stage4(x)  # N x 960 x 7 x 7

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(x.mean([2, 3]))  # N x 960 -> N x num_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes)


@register_model(family="shufflenet_v1", paper="Zhang et al., ShuffleNet: An Extremely Efficient Convolutional "
                "Neural Network for Mobile Devices", year=2018, min_size={"imagenet": 32, "cifar": 8})
def shufflenet_v1(num_classes: int = 1000, in_channels: int = 3, groups: int = 3, **kwargs: Any) -> ShuffleNetV1:
    """ShuffleNet 1x with ``groups`` = 1, 2, 3 (the paper's default), 4 or 8."""
    return ShuffleNetV1(groups, num_classes, in_channels, **kwargs)
