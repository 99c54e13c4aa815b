"""ResNet, ResNeXt, Wide ResNet and pre-activation ResNet: one configurable class.

- K. He, X. Zhang, S. Ren, J. Sun (2015). "Deep Residual Learning for Image Recognition". CVPR 2016.
  The idea: let each block learn a residual ``F(x)`` added to an identity shortcut, ``y = F(x) + x``, so a
  deeper network can always fall back to the shallower one and 100+ layers train.
- S. Xie, R. Girshick, P. Dollar, Z. Tu, K. He (2016). "Aggregated Residual Transformations for Deep Neural
  Networks". CVPR 2017. ResNeXt: the bottleneck's 3x3 conv is split into ``groups`` (cardinality) parallel
  paths of ``width_per_group`` channels; more paths beat more width or depth at the same cost.
- S. Zagoruyko, N. Komodakis (2016). "Wide Residual Networks". BMVC 2016. torchvision's ``wide_resnet50_2``
  doubles the bottleneck width (``width_per_group=128``).
- K. He, X. Zhang, S. Ren, J. Sun (2016). "Identity Mappings in Deep Residual Networks". ECCV 2016.
  Pre-activation (ResNet v2): BN-ReLU-conv inside the branch and nothing after the addition, so the
  shortcut path is a pure identity from any block to any later one; one BN-ReLU closes the network.

State-dict keys are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv2``, ``layer2.0.downsample.0``, ``fc``),
so torchvision weights load with ``strict=True``. Bottleneck strides sit on the 3x3 conv (torchvision's
"v1.5"). ``stem="cifar"`` swaps the 7x7/2 conv and max-pool for a 3x3/1 conv, keeping the key names.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.registry import register_model
from zoo.weights import STATE_DICT_CONVERTERS

STEMS = ("imagenet", "cifar")


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34): conv-BN-ReLU-conv-BN, add the shortcut, ReLU."""

    expansion = 1
    preact = False

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, first: bool = False) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ZooError("BasicBlock (ResNet-18/34) has groups=1 and width_per_group=64 only; use Bottleneck")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce - 3x3 (grouped for ResNeXt, strided) - 1x1 expand x4, add the shortcut, ReLU."""

    expansion = 4
    preact = False

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, first: bool = False) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups  # ResNeXt: C paths of d channels
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class PreActBasicBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-conv3x3, plus the shortcut, no ReLU after.

    ``first``: the network's first block, whose input the stem has already passed through BN-ReLU (the
    paper's "first activation right after conv1"), so it has no pre-activation of its own. A projection
    shortcut reads the pre-activated input (both paths share the BN-ReLU); an identity shortcut reads ``x``.
    """

    expansion = 1
    preact = True

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, first: bool = False) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ZooError("PreActBasicBlock has groups=1 and width_per_group=64 only; use PreActBottleneck")
        self.bn1 = nn.Identity() if first else nn.BatchNorm2d(inplanes)
        self.relu = nn.Identity() if first else nn.ReLU()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + identity  # nothing after the addition: the identity path stays clean


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: (BN-ReLU-conv) x3 with 1x1, 3x3, 1x1 kernels, plus the shortcut."""

    expansion = 4
    preact = True

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, first: bool = False) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.bn1 = nn.Identity() if first else nn.BatchNorm2d(inplanes)
        self.relu = nn.Identity() if first else nn.ReLU()
        self.conv1 = conv1x1(inplanes, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        out = self.conv3(torch.relu(self.bn3(out)))
        return out + identity


Block = type[BasicBlock] | type[Bottleneck] | type[PreActBasicBlock] | type[PreActBottleneck]


class ResNet(nn.Module):
    """Stem, ``len(layers)`` stages of residual blocks (64, 128, 256, 512 planes; stride 2 from the second),
    global average pooling and one linear classifier ``fc``.

    Args:
        block: ``BasicBlock``/``Bottleneck`` (post-activation, torchvision) or their ``PreAct*`` versions.
        layers: blocks per stage, e.g. ``[3, 4, 6, 3]`` for ResNet-50, ``[3, 3, 3]`` for CIFAR ResNeXt-29.
        groups, width_per_group: ResNeXt cardinality C and bottleneck width d (``32, 4`` is "32x4d").
        stem: ``"imagenet"`` (7x7/2 conv, 3x3/2 max-pool) or ``"cifar"`` (3x3/1 conv, no pool).
        zero_init_residual: start the last BN (pre-activation: the last conv) of every branch at zero, so
            each block starts as the identity (Goyal et al. 2017).
    """

    def __init__(self, block: Block, layers: list[int], num_classes: int = 1000, in_channels: int = 3,
                 groups: int = 1, width_per_group: int = 64, stem: str = "imagenet",
                 zero_init_residual: bool = False) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ZooError(f"unknown stem {stem!r}; valid: {', '.join(STEMS)}")
        self.stem = stem
        # The ImageNet stem reduces 4x and each later stage 2x: 32 pixels end as a 1x1 map (CIFAR stem: 8).
        self.min_size = 32 if stem == "imagenet" else 8
        self.inplanes = 64
        self.groups = groups
        self.base_width = width_per_group
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        for i, n in enumerate(layers):
            stage = self._make_layer(block, 64 * 2**i, n, stride=1 if i == 0 else 2, first=i == 0)
            setattr(self, f"layer{i + 1}", stage)
        self.num_stages = len(layers)
        self.num_features = 64 * 2 ** (len(layers) - 1) * block.expansion
        # Pre-activation: the last block ends in an addition, so one BN-ReLU precedes the pooling.
        self.norm = nn.BatchNorm2d(self.num_features) if block.preact else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)
        self._init_weights(zero_init_residual)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int, first: bool) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            proj = conv1x1(self.inplanes, planes * block.expansion, stride)
            # Pre-activation projections read an already normalised input: no BN after them.
            downsample = nn.Sequential(proj) if block.preact else nn.Sequential(
                proj, nn.BatchNorm2d(planes * block.expansion))
        blocks_ = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width, first=first)]
        self.inplanes = planes * block.expansion
        blocks_ += [block(self.inplanes, planes, groups=self.groups, base_width=self.base_width)
                    for _ in range(1, blocks)]
        return nn.Sequential(*blocks_)

    def _init_weights(self, zero_init_residual: bool) -> None:
        """He et al. 2015 (Kaiming normal, fan_out) for convs, BN at gamma=1, beta=0; torchvision's recipe."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)
                elif isinstance(m, PreActBottleneck):
                    nn.init.zeros_(m.conv3.weight)
                elif isinstance(m, PreActBasicBlock):
                    nn.init.zeros_(m.conv2.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone: N x C x H x W image -> N x num_features x H/32 x W/32 map (H/8 with the CIFAR stem)."""
        h, w = x.shape[-2:]
        if min(h, w) < self.min_size:
            raise ZooError(f"{type(self).__name__} with the {self.stem} stem needs inputs of at least "
                           f"{self.min_size}x{self.min_size}; got {h}x{w}")
        x = self.relu(self.bn1(self.conv1(x)))  # N x 64 x 112 x 112 (ImageNet stem, 224 input)
        x = self.maxpool(x)  # N x 64 x 56 x 56
        x = self.layer1(x)  # N x 256 x 56 x 56 (Bottleneck; 64 for BasicBlock)
        for i in range(2, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)  # N x 512 x 28 x 28, N x 1024 x 14 x 14, N x 2048 x 7 x 7
        if self.norm is not None:
            x = torch.relu(self.norm(x))
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 2048
        return self.fc(x)  # N x num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes)


def fill_bn_counters(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Add the BN ``num_batches_tracked`` counters (as 0) that files saved before PyTorch 0.4.1 lack.

    The original published ImageNet weights predate the counter; ``BatchNorm`` itself fills it in for such
    version-1 state dicts, and this lets the strict key check of ``zoo.load_pretrained`` agree.
    """
    out = dict(state_dict)
    for key in state_dict:
        if key.endswith(".running_mean"):
            out.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0))
    return out


for _family in ("resnet", "resnext", "wide_resnet", "preact_resnet"):
    STATE_DICT_CONVERTERS[_family] = fill_bn_counters


def _resnet(block: Block, layers: list[int], num_classes: int, in_channels: int, **kwargs: Any) -> ResNet:
    return ResNet(block, layers, num_classes=num_classes, in_channels=in_channels, **kwargs)


_RESNET = dict(family="resnet", paper="He et al., Deep Residual Learning for Image Recognition", year=2015,
               min_size=32)
_RESNEXT = dict(family="resnext", paper="Xie et al., Aggregated Residual Transformations for Deep Neural Networks",
                year=2016, min_size=32)
_WIDE = dict(family="wide_resnet", paper="Zagoruyko & Komodakis, Wide Residual Networks", year=2016, min_size=32)
_PREACT = dict(family="preact_resnet", paper="He et al., Identity Mappings in Deep Residual Networks", year=2016,
               min_size=32)


@register_model(**_RESNET, torchvision="resnet18")
def resnet18(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    return _resnet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, **kwargs)


@register_model(**_RESNET, torchvision="resnet34")
def resnet34(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    return _resnet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, **kwargs)


@register_model(**_RESNET, torchvision="resnet50")
def resnet50(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, **kwargs)


@register_model(**_RESNET, torchvision="resnet101")
def resnet101(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 23, 3], num_classes, in_channels, **kwargs)


@register_model(**_RESNET, torchvision="resnet152")
def resnet152(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    return _resnet(Bottleneck, [3, 8, 36, 3], num_classes, in_channels, **kwargs)


@register_model(**_RESNEXT, torchvision="resnext50_32x4d")
def resnext50_32x4d(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, groups=32, width_per_group=4, **kwargs)


@register_model(**_RESNEXT, torchvision="resnext101_32x8d")
def resnext101_32x8d(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 23, 3], num_classes, in_channels, groups=32, width_per_group=8, **kwargs)


@register_model(**_RESNEXT, torchvision="resnext101_64x4d")
def resnext101_64x4d(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 23, 3], num_classes, in_channels, groups=64, width_per_group=4, **kwargs)


# ResNeXt-29 (Xie et al. 2016, section 5.3 "Experiments on CIFAR", Table 7): a 3x3 conv of 64, then three
# stages of three bottleneck blocks (outputs 256, 512, 1024; strides 1, 2, 2), pooling and fc. 8x64d has
# 34.4M parameters and 3.65% CIFAR-10 error in Table 7. Born for 32x32 images: the CIFAR stem by default.
@register_model(**{**_RESNEXT, "min_size": 8}, input_size=(3, 32, 32))
def resnext29_32x4d(num_classes: int = 10, in_channels: int = 3, stem: str = "cifar", **kwargs: Any) -> ResNet:
    return _resnet(Bottleneck, [3, 3, 3], num_classes, in_channels, groups=32, width_per_group=4, stem=stem, **kwargs)


@register_model(**{**_RESNEXT, "min_size": 8}, input_size=(3, 32, 32))
def resnext29_8x64d(num_classes: int = 10, in_channels: int = 3, stem: str = "cifar", **kwargs: Any) -> ResNet:
    return _resnet(Bottleneck, [3, 3, 3], num_classes, in_channels, groups=8, width_per_group=64, stem=stem, **kwargs)


@register_model(**_WIDE, torchvision="wide_resnet50_2")
def wide_resnet50_2(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, width_per_group=128, **kwargs)


@register_model(**_WIDE, torchvision="wide_resnet101_2")
def wide_resnet101_2(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 23, 3], num_classes, in_channels, width_per_group=128, **kwargs)


@register_model(**_PREACT)
def preact_resnet18(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    return _resnet(PreActBasicBlock, [2, 2, 2, 2], num_classes, in_channels, **kwargs)


@register_model(**_PREACT)
def preact_resnet34(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    return _resnet(PreActBasicBlock, [3, 4, 6, 3], num_classes, in_channels, **kwargs)


@register_model(**_PREACT)
def preact_resnet50(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    return _resnet(PreActBottleneck, [3, 4, 6, 3], num_classes, in_channels, **kwargs)


@register_model(**_PREACT)
def preact_resnet101(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    return _resnet(PreActBottleneck, [3, 4, 23, 3], num_classes, in_channels, **kwargs)


@register_model(**_PREACT)
def preact_resnet152(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    return _resnet(PreActBottleneck, [3, 8, 36, 3], num_classes, in_channels, **kwargs)
