"""ResNet, ResNeXt, Wide ResNet and pre-activation ResNet: one configurable class.

- K. He, X. Zhang, S. Ren, J. Sun (2015). "Deep Residual Learning for Image Recognition". CVPR 2016.
  The idea: let each block learn a residual ``F(x)`` added to an identity shortcut, ``y = F(x) + x``, so a
  deeper network can always fall back to the shallower one and 100+ layers train.
- S. Xie, R. Girshick, P. Dollar, Z. Tu, K. He (2016). "Aggregated Residual Transformations for Deep Neural
  Networks". CVPR 2017. ResNeXt: the bottleneck's 3x3 conv is split into ``groups`` (cardinality) parallel
  paths of ``width_per_group`` channels; more paths beat more width or depth at the same cost.
- S. Zagoruyko, N. Komodakis (2016). "Wide Residual Networks". BMVC 2016. Fewer, wider blocks beat thin deep
  ones: WRN-d-k is a CIFAR pre-activation ResNet of basic blocks with k times the widths (16k, 32k, 64k) and
  dropout between the two convolutions; torchvision's ``wide_resnet50_2`` doubles the bottleneck width
  (``width_per_group=128``) of the ImageNet ResNet-50.
- K. He, X. Zhang, S. Ren, J. Sun (2016). "Identity Mappings in Deep Residual Networks". ECCV 2016.
  Pre-activation (ResNet v2): BN-ReLU-conv inside the branch and nothing after the addition, so the
  shortcut path is a pure identity from any block to any later one; one BN-ReLU closes the network.

State-dict keys are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv2``, ``layer2.0.downsample.0``, ``fc``),
so torchvision weights load with ``strict=True``. Bottleneck strides sit on the 3x3 conv (torchvision's
"v1.5"). ``stem="cifar"`` swaps the 7x7/2 conv and max-pool for a 3x3/1 conv, keeping the key names.

The papers' CIFAR networks are the same class with other stage widths: He et al. 2015 (section 4.2) use
16-32-64 and 6n+2 layers of basic blocks, with "option A" shortcuts (identity, sub-sampled and zero-padded
where the width doubles: no parameters) or "option B" (1x1 projections there); ``shortcut="none"`` removes
the shortcuts, giving the paper's plain baselines (Figure 6).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ZooError
from zoo.init import zero_init_last
from zoo.models.layers import check_input_size, check_stem
from zoo.models.norms import make_norm
from zoo.registry import register_model

NormLayer = Callable[[int], nn.Module]
SHORTCUTS = ("B", "A", "none")  # He et al. 2015's options for the blocks that change width, and none at all


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """He et al. 2015's option A: the identity, sub-sampled by ``stride`` and zero-padded to ``out_channels``.

    The new channels are appended as zeros (fb.resnet.torch's ``shortcutType A``); no parameters, no keys.
    """

    def __init__(self, out_channels: int, stride: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # N x C x H/s x W/s
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - x.shape[1]))  # N x out_channels x H/s x W/s


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34, the CIFAR ResNets): conv-BN-ReLU-conv-BN, add the shortcut, ReLU.

    ``residual=False`` drops the addition: the plain network of He et al. 2015 (Figure 6).
    """

    expansion = 1
    preact = False

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, first: bool = False, norm_layer: NormLayer = nn.BatchNorm2d,
                 drop_rate: float = 0.0, residual: bool = True) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ZooError("BasicBlock (ResNet-18/34) has groups=1 and width_per_group=64 only; use Bottleneck")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity if self.residual else out)


class Bottleneck(nn.Module):
    """1x1 reduce - 3x3 (grouped for ResNeXt, strided) - 1x1 expand x4, add the shortcut, ReLU."""

    expansion = 4
    preact = False

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, first: bool = False, norm_layer: NormLayer = nn.BatchNorm2d,
                 drop_rate: float = 0.0, residual: bool = True) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups  # ResNeXt: C paths of d channels
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class PreActBasicBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3, plus the shortcut, no ReLU after.

    ``first``: the network's first block, whose input the stem has already passed through BN-ReLU (the
    paper's "first activation right after conv1"), so it has no pre-activation of its own. A projection
    shortcut reads the pre-activated input (both paths share the BN-ReLU); an identity shortcut reads ``x``.
    ``drop_rate``: Wide ResNets' dropout between the two convolutions (Zagoruyko & Komodakis, section 2.4).
    """

    expansion = 1
    preact = True

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, first: bool = False, norm_layer: NormLayer = nn.BatchNorm2d,
                 drop_rate: float = 0.0, residual: bool = True) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ZooError("PreActBasicBlock has groups=1 and width_per_group=64 only; use PreActBottleneck")
        self.bn1 = nn.Identity() if first else norm_layer(inplanes)
        self.relu = nn.Identity() if first else nn.ReLU()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = downsample
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = F.dropout(torch.relu(self.bn2(out)), self.drop_rate, self.training)
        out = self.conv2(out)
        return out + identity  # nothing after the addition: the identity path stays clean


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: (BN-ReLU-conv) x3 with 1x1, 3x3, 1x1 kernels, plus the shortcut."""

    expansion = 4
    preact = True

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, first: bool = False, norm_layer: NormLayer = nn.BatchNorm2d,
                 drop_rate: float = 0.0, residual: bool = True) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.bn1 = nn.Identity() if first else norm_layer(inplanes)
        self.relu = nn.Identity() if first else nn.ReLU()
        self.conv1 = conv1x1(inplanes, width)
        self.bn2 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn3 = norm_layer(width)
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
    """Stem, ``len(layers)`` stages of residual blocks (``widths`` planes; stride 2 from the second),
    global average pooling and one linear classifier ``fc``.

    Args:
        block: ``BasicBlock``/``Bottleneck`` (post-activation, torchvision) or their ``PreAct*`` versions.
        layers: blocks per stage, e.g. ``[3, 4, 6, 3]`` for ResNet-50, ``[9, 9, 9]`` for CIFAR ResNet-56.
        groups, width_per_group: ResNeXt cardinality C and bottleneck width d (``32, 4`` is "32x4d").
        stem: ``"imagenet"`` (7x7/2 conv, 3x3/2 max-pool) or ``"cifar"`` (3x3/1 conv, no pool).
        zero_init_residual: start every residual branch at zero (:func:`zoo.init.zero_init_last`), so each
            block starts as the identity (Goyal et al. 2017).
        widths: planes of each stage (default 64, 128, 256, ...; the CIFAR ResNets: 16, 32, 64).
        stem_width: channels of the stem convolution (default ``widths[0]``; Wide ResNets: 16).
        shortcut: for the blocks that change the width, ``"B"`` 1x1 projections (torchvision), ``"A"`` the
            zero-padded identity (He et al.'s CIFAR nets), ``"none"`` no shortcut anywhere (plain nets;
            ``BasicBlock`` only).
        norm_layer: builds each normalisation from its channel count (torchvision's ``norm_layer``).
        norm, norm_groups: the config's way to choose it (``model.norm=group``, zoo.models.norms.make_norm):
            batch, group, layer, instance, switchable or none; ``None`` keeps ``norm_layer``.
        drop_rate: dropout inside ``PreActBasicBlock`` (Wide ResNets).
    """

    min_size: int | None = None  # from @register_model(min_size=...), set when built by name

    def __init__(self, block: Block, layers: list[int], num_classes: int = 1000, in_channels: int = 3,
                 groups: int = 1, width_per_group: int = 64, stem: str = "imagenet",
                 zero_init_residual: bool = False, widths: list[int] | None = None, stem_width: int | None = None,
                 shortcut: str = "B", norm_layer: NormLayer = nn.BatchNorm2d, drop_rate: float = 0.0,
                 norm: str | None = None, norm_groups: int = 32) -> None:
        super().__init__()
        if norm is not None:  # batch keeps BatchNorm2d's keys; the others change what the bn* modules are
            norm_layer = functools.partial(make_norm, norm, groups=norm_groups, dim=2)
        self.stem = check_stem(stem)
        if shortcut not in SHORTCUTS:
            raise ZooError(f"unknown shortcut {shortcut!r}; valid: {', '.join(SHORTCUTS)}")
        if shortcut == "none" and block is not BasicBlock:
            raise ZooError("shortcut=none (a plain network) is built from BasicBlock only")
        if drop_rate and block is not PreActBasicBlock:
            raise ZooError("drop_rate is the Wide ResNets' dropout: PreActBasicBlock only")
        widths = list(widths) if widths is not None else [64 * 2**i for i in range(len(layers))]
        if len(widths) != len(layers):
            raise ZooError(f"widths has {len(widths)} stages, layers {len(layers)}")
        stem_width = stem_width or widths[0]
        self.inplanes = stem_width
        self.groups = groups
        self.base_width = width_per_group
        self.shortcut = shortcut
        self.norm_layer = norm_layer
        self.drop_rate = drop_rate
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = norm_layer(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        for i, (n, planes) in enumerate(zip(layers, widths, strict=True)):
            stage = self._make_layer(block, planes, n, stride=1 if i == 0 else 2, first=i == 0)
            setattr(self, f"layer{i + 1}", stage)
        self.num_stages = len(layers)
        self.num_features = widths[-1] * block.expansion
        # Pre-activation: the last block ends in an addition, so one BN-ReLU precedes the pooling.
        self.norm = norm_layer(self.num_features) if block.preact else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)
        self._init_weights(zero_init_residual)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int, first: bool) -> nn.Sequential:
        out = planes * block.expansion
        downsample: nn.Module | None = None
        if self.shortcut == "A" and (stride != 1 or self.inplanes != out):
            downsample = ZeroPadShortcut(out, stride)
        elif self.shortcut == "B" and (stride != 1 or self.inplanes != out):
            proj = conv1x1(self.inplanes, out, stride)
            # Pre-activation projections read an already normalised input: no BN after them.
            downsample = nn.Sequential(proj) if block.preact else nn.Sequential(proj, self.norm_layer(out))
        kw = dict(groups=self.groups, base_width=self.base_width, norm_layer=self.norm_layer,
                  drop_rate=self.drop_rate, residual=self.shortcut != "none")
        blocks_ = [block(self.inplanes, planes, stride, downsample, first=first, **kw)]
        self.inplanes = out
        blocks_ += [block(self.inplanes, planes, **kw) for _ in range(1, blocks)]
        return nn.Sequential(*blocks_)

    def _init_weights(self, zero_init_residual: bool) -> None:
        """He et al. 2015 (Kaiming normal, fan_out) for convs, BN at gamma=1, beta=0; torchvision's recipe."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck)):
                    zero_init_last(m)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone: N x C x H x W image -> N x num_features x H/32 x W/32 map (H/8 with the CIFAR stem)."""
        x = check_input_size(x, self.min_size, f"{type(self).__name__} (stem={self.stem})")
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


def _resnet(block: Block, layers: list[int], num_classes: int, in_channels: int, **kwargs: Any) -> ResNet:
    return ResNet(block, layers, num_classes=num_classes, in_channels=in_channels, **kwargs)


# The ImageNet stem reduces 4x and each later stage 2x: 32 pixels end as a 1x1 map (CIFAR stem: 8).
_SIZES = {"min_size": {"imagenet": 32, "cifar": 8}, "state_dict_converter": fill_bn_counters}
_RESNET = dict(family="resnet", paper="He et al., Deep Residual Learning for Image Recognition", year=2015, **_SIZES)
_RESNEXT = dict(family="resnext", paper="Xie et al., Aggregated Residual Transformations for Deep Neural Networks",
                year=2016, **_SIZES)
_WIDE = dict(family="wide_resnet", paper="Zagoruyko & Komodakis, Wide Residual Networks", year=2016, **_SIZES)
_PREACT = dict(family="preact_resnet", paper="He et al., Identity Mappings in Deep Residual Networks", year=2016,
               **_SIZES)
_CIFAR = {"input_size": (3, 32, 32)}


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
@register_model(**_RESNEXT, **_CIFAR)
def resnext29_32x4d(num_classes: int = 10, in_channels: int = 3, stem: str = "cifar", **kwargs: Any) -> ResNet:
    return _resnet(Bottleneck, [3, 3, 3], num_classes, in_channels, groups=32, width_per_group=4, stem=stem, **kwargs)


@register_model(**_RESNEXT, **_CIFAR)
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


# -- the papers' CIFAR networks ------------------------------------------------------------------------------
# He et al. 2015, section 4.2: a 3x3 conv of 16, three stages of n basic blocks (16, 32, 64 planes; 32x32,
# 16x16, 8x8 maps), global average pooling and a 10-way fc: 6n + 2 weighted layers. Option A shortcuts (the
# zero-padded identity) as in the paper's Table 6; ``shortcut="B"`` selects the 1x1 projections.
def _cifar_resnet(depth: int, num_classes: int, in_channels: int, stem: str, kwargs: dict[str, Any]) -> ResNet:
    n = (depth - 2) // 6
    kwargs = {"shortcut": "A", "widths": [16, 32, 64], **kwargs}
    return _resnet(BasicBlock, [n] * 3, num_classes, in_channels, stem=stem, **kwargs)


@register_model(**_RESNET, **_CIFAR)
def resnet20(num_classes: int = 10, in_channels: int = 3, stem: str = "cifar", **kwargs: Any) -> ResNet:
    return _cifar_resnet(20, num_classes, in_channels, stem, kwargs)


@register_model(**_RESNET, **_CIFAR)
def resnet32(num_classes: int = 10, in_channels: int = 3, stem: str = "cifar", **kwargs: Any) -> ResNet:
    return _cifar_resnet(32, num_classes, in_channels, stem, kwargs)


@register_model(**_RESNET, **_CIFAR)
def resnet44(num_classes: int = 10, in_channels: int = 3, stem: str = "cifar", **kwargs: Any) -> ResNet:
    return _cifar_resnet(44, num_classes, in_channels, stem, kwargs)


@register_model(**_RESNET, **_CIFAR)
def resnet56(num_classes: int = 10, in_channels: int = 3, stem: str = "cifar", **kwargs: Any) -> ResNet:
    return _cifar_resnet(56, num_classes, in_channels, stem, kwargs)


@register_model(**_RESNET, **_CIFAR)
def resnet110(num_classes: int = 10, in_channels: int = 3, stem: str = "cifar", **kwargs: Any) -> ResNet:
    return _cifar_resnet(110, num_classes, in_channels, stem, kwargs)


@register_model(**_RESNET, **_CIFAR)
def resnet1202(num_classes: int = 10, in_channels: int = 3, stem: str = "cifar", **kwargs: Any) -> ResNet:
    return _cifar_resnet(1202, num_classes, in_channels, stem, kwargs)


# He et al. 2016 (Identity Mappings), Table 2/3: pre-activation bottlenecks on 16-32-64 planes (outputs 64,
# 128, 256), 9n + 2 layers; ResNet-164 is n = 18, ResNet-1001 n = 111.
@register_model(**_PREACT, **_CIFAR)
def preact_resnet164(num_classes: int = 10, in_channels: int = 3, stem: str = "cifar", **kwargs: Any) -> ResNet:
    return _resnet(PreActBottleneck, [18] * 3, num_classes, in_channels, widths=[16, 32, 64], stem=stem, **kwargs)


@register_model(**_PREACT, **_CIFAR)
def preact_resnet1001(num_classes: int = 10, in_channels: int = 3, stem: str = "cifar", **kwargs: Any) -> ResNet:
    return _resnet(PreActBottleneck, [111] * 3, num_classes, in_channels, widths=[16, 32, 64], stem=stem, **kwargs)


# Zagoruyko & Komodakis 2016, Table 1: WRN-d-k, a 3x3 conv of 16 then three stages of (d - 4) / 6
# pre-activation basic blocks of 16k, 32k, 64k planes; ``drop_rate`` is their dropout (0.3 in Table 6).
def _wide(depth: int, k: int, num_classes: int, in_channels: int, stem: str, kwargs: dict[str, Any]) -> ResNet:
    n = (depth - 4) // 6
    kwargs = {"widths": [16 * k, 32 * k, 64 * k], "stem_width": 16, **kwargs}
    return _resnet(PreActBasicBlock, [n] * 3, num_classes, in_channels, stem=stem, **kwargs)


@register_model(**_WIDE, **_CIFAR)
def wide_resnet16_8(num_classes: int = 10, in_channels: int = 3, stem: str = "cifar", **kwargs: Any) -> ResNet:
    return _wide(16, 8, num_classes, in_channels, stem, kwargs)


@register_model(**_WIDE, **_CIFAR)
def wide_resnet28_10(num_classes: int = 10, in_channels: int = 3, stem: str = "cifar", **kwargs: Any) -> ResNet:
    return _wide(28, 10, num_classes, in_channels, stem, kwargs)


@register_model(**_WIDE, **_CIFAR)
def wide_resnet40_4(num_classes: int = 10, in_channels: int = 3, stem: str = "cifar", **kwargs: Any) -> ResNet:
    return _wide(40, 4, num_classes, in_channels, stem, kwargs)


# ResNeXt-29 16x64d (Xie et al. 2016, Table 7: 68.1M parameters, 3.58% CIFAR-10 / 17.31% CIFAR-100 error).
@register_model(**_RESNEXT, **_CIFAR)
def resnext29_16x64d(num_classes: int = 10, in_channels: int = 3, stem: str = "cifar", **kwargs: Any) -> ResNet:
    return _resnet(Bottleneck, [3, 3, 3], num_classes, in_channels, groups=16, width_per_group=64, stem=stem, **kwargs)
