"""DenseNet-BC.

G. Huang, Z. Liu, L. van der Maaten, K. Q. Weinberger (2016). "Densely Connected Convolutional Networks".
CVPR 2017.

The idea: inside a dense block every layer receives the concatenation of ALL earlier feature maps and adds
only ``growth_rate`` (k) new ones, so features are reused instead of relearned and gradients reach every
layer directly. "-BC": each layer is BN-ReLU-conv1x1 (bottleneck to ``bn_size * k`` maps) then
BN-ReLU-conv3x3 (k maps), and transitions between blocks halve the channels (compression 0.5) and the size.

``memory_efficient=True`` (Pleiss et al. 2017, "Memory-Efficient Implementation of DenseNets") recomputes
the concatenation + BN-ReLU-conv1x1 in the backward pass (``torch.utils.checkpoint``) instead of storing it,
turning the quadratic activation memory of a block into linear; outputs and gradients are unchanged.

Until 2026-12-01 zoo's CIFAR stem was conv0-norm0-relu0 (a BN-ReLU after the conv); the authors' is the bare conv
that ``stem="cifar"`` builds now. A BN followed by a ReLU cannot be folded into the conv, so ``stem_norm=True``
builds the old stem exactly, and a checkpoint or state dict written then (a ``features.norm0`` in a CIFAR-stem
DenseNet) gets it by itself: :func:`stem_options` is the registry entry's ``options_from_weights``.

State-dict keys are torchvision's (``features.denseblock1.denselayer1.norm1``, ``features.transition1.conv``,
``classifier``). The published weight files predate that naming (``denselayer1.norm.1``) and BN's
``num_batches_tracked``: :func:`convert_legacy_keys` renames them, and ``zoo.load_pretrained`` applies it (and
adds the counters) to bare DenseNet state dicts.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

from zoo.errors import ZooError
from zoo.models.layers import check_input_size, check_stem
from zoo.models.resnet import fill_bn_counters
from zoo.registry import register_model


class _DenseLayer(nn.Module):
    """BN-ReLU-conv1x1 (``bn_size * k`` maps) - BN-ReLU-conv3x3 (k maps) on the concatenation of all inputs."""

    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int, drop_rate: float,
                 memory_efficient: bool = False) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)
        self.drop_rate = float(drop_rate)
        self.memory_efficient = memory_efficient

    def bottleneck(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self.conv1(self.relu1(self.norm1(torch.cat(inputs, 1))))

    def _checkpointed_bottleneck(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """The bottleneck under ``checkpoint``: its concatenation is not kept for backward but recomputed.

        The recomputation normalises with the same batch statistics but must not move the running mean and
        variance a second time (a plain ``checkpoint`` of a BN in training mode does, torchvision's included),
        so it calls ``F.batch_norm`` with momentum 0 and leaves ``num_batches_tracked`` alone.
        """
        calls = [0]

        def closure(*xs: torch.Tensor) -> torch.Tensor:
            calls[0] += 1
            if calls[0] == 1 or not self.norm1.training:
                return self.bottleneck(list(xs))
            n = self.norm1
            y = F.batch_norm(torch.cat(xs, 1), n.running_mean, n.running_var, n.weight, n.bias, True, 0.0, n.eps)
            return self.conv1(self.relu1(y))

        return cp.checkpoint(closure, *inputs, use_reentrant=False)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if self.memory_efficient and any(t.requires_grad for t in inputs):
            out = self._checkpointed_bottleneck(inputs)  # N x bn_size*k x H x W, not stored
        else:
            out = self.bottleneck(inputs)  # N x bn_size*k x H x W
        out = self.conv2(self.relu2(self.norm2(out)))  # N x k x H x W
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out


class _DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; layer i sees ``num_input_features + i * k`` channels."""

    def __init__(self, num_layers: int, num_input_features: int, bn_size: int, growth_rate: int,
                 drop_rate: float, memory_efficient: bool = False) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = _DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size, drop_rate,
                                memory_efficient)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)  # N x (C_in + num_layers*k) x H x W


class _Transition(nn.Sequential):
    """BN-ReLU-conv1x1 (compress channels) - 2x2 average pool (halve the size)."""

    def __init__(self, num_input_features: int, num_output_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, kernel_size=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    """DenseNet-BC: stem, dense blocks joined by transitions, BN-ReLU, global pooling, ``classifier``.

    Args:
        growth_rate: k, the maps each layer adds (32; 48 for DenseNet-161).
        block_config: layers per dense block, e.g. ``(6, 12, 24, 16)`` for DenseNet-121.
        num_init_features: channels of the stem conv (2k).
        bn_size: bottleneck width as a multiple of k (4).
        stem: ``"imagenet"`` (7x7/2 conv, BN-ReLU, 3x3/2 max-pool) or ``"cifar"`` (a bare 3x3/1 conv, as the
            authors' CIFAR networks: no ``norm0``/``relu0``/``pool0``; the other keys are the same).
        memory_efficient: recompute the bottlenecks in backward instead of storing them.
        stem_norm: BN-ReLU (``norm0``, ``relu0``) after the stem conv. None: the stem's own rule (yes after the
            ImageNet conv, no after the CIFAR one); True with ``stem="cifar"``: zoo's CIFAR stem before
            2026-12-01, kept so that the checkpoints trained with it load and give the same outputs.
    """

    min_size: int | None = None  # from @register_model(min_size=...), set when built by name

    def __init__(self, growth_rate: int = 32, block_config: tuple[int, ...] = (6, 12, 24, 16),
                 num_init_features: int = 64, bn_size: int = 4, drop_rate: float = 0.0, num_classes: int = 1000,
                 in_channels: int = 3, memory_efficient: bool = False, stem: str = "imagenet",
                 stem_norm: bool | None = None) -> None:
        super().__init__()
        self.stem = check_stem(stem)
        if stem_norm is not None and not isinstance(stem_norm, bool):  # a record's value is data: checked
            raise ZooError(f"stem_norm must be true, false or null; got {str(stem_norm)[:40]!r}")
        if stem == "imagenet":
            conv0 = nn.Conv2d(in_channels, num_init_features, 7, stride=2, padding=3, bias=False)
        else:
            # The authors' CIFAR code (liuzhuang13/DenseNet, models/densenet.lua; kuangliu's port too): a bare 3x3
            # convolution straight into the first dense block, whose layers begin with their own BN-ReLU.
            conv0 = nn.Conv2d(in_channels, num_init_features, 3, stride=1, padding=1, bias=False)
        self.features = nn.Sequential(OrderedDict(conv0=conv0))
        with_norm = stem == "imagenet" if stem_norm is None else stem_norm  # the stem's own rule, or as asked
        if with_norm:
            self.features.add_module("norm0", nn.BatchNorm2d(num_init_features))
            self.features.add_module("relu0", nn.ReLU(inplace=True))
        if stem == "imagenet":
            self.features.add_module("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            block = _DenseBlock(num_layers, num_features, bn_size, growth_rate, drop_rate, memory_efficient)
            self.features.add_module(f"denseblock{i + 1}", block)
            num_features += num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(num_features, num_features // 2))
                num_features //= 2
        self.features.add_module(f"norm{len(block_config) + 1}", nn.BatchNorm2d(num_features))
        self.num_features = num_features
        self.classifier = nn.Linear(num_features, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """Kaiming normal (fan_out, as the authors' fb.resnet.torch-based code) for convs, BN 1/0, fc bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """N x C x H x W image -> N x num_features x H/32 x W/32 (H/8 with the CIFAR stem), after BN-ReLU."""
        x = check_input_size(x, self.min_size, f"DenseNet (stem={self.stem})")
        # DenseNet-121 at 224: stem N x 64 x 56 x 56; blocks 256 x 56, 512 x 28, 1024 x 14, 1024 x 7 x 7
        return F.relu(self.features(x))  # N x 1024 x 7 x 7

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # N x 1024
        return self.classifier(x)  # N x num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.num_features, num_classes)
        nn.init.zeros_(self.classifier.bias)


_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def convert_legacy_keys(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Rename the keys of the original DenseNet weight files (``...denselayer1.norm.1.weight``) to torchvision's
    current ones (``...denselayer1.norm1.weight``); other keys pass through, so it is safe on new files too."""
    out = OrderedDict()
    for key, value in state_dict.items():
        m = _LEGACY_KEY.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


def convert_published(state_dict: dict[str, Any]) -> dict[str, Any]:
    """The published DenseNet files as current torchvision keys, with the BN counters they predate."""
    return fill_bn_counters(convert_legacy_keys(state_dict))


def stem_options(arch: dict[str, Any], weights: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """``stem_norm=True`` for the weights of a CIFAR-stem DenseNet that hold ``features.norm0``: zoo's stem before
    2026-12-01, whose records say only ``stem="cifar"`` (``arch``: the record's options, the stem resolved)."""
    if arch.get("stem") == "cifar" and "features.norm0.weight" in weights:
        return {"stem_norm": True}
    return {}


# ImageNet stem /4, then a /2 per transition: 32 pixels reach the last block as 1x1 (CIFAR stem: 8).
_DENSENET = dict(family="densenet", paper="Huang et al., Densely Connected Convolutional Networks", year=2016,
                 min_size={"imagenet": 32, "cifar": 8}, state_dict_converter=convert_published,
                 options_from_weights=stem_options)


def _densenet(growth_rate: int, block_config: tuple[int, ...], num_init_features: int, num_classes: int,
              in_channels: int, **kwargs: Any) -> DenseNet:
    return DenseNet(growth_rate, block_config, num_init_features, num_classes=num_classes, in_channels=in_channels,
                    **kwargs)


@register_model(**_DENSENET, torchvision="densenet121")
def densenet121(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> DenseNet:
    return _densenet(32, (6, 12, 24, 16), 64, num_classes, in_channels, **kwargs)


@register_model(**_DENSENET, torchvision="densenet161")
def densenet161(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> DenseNet:
    return _densenet(48, (6, 12, 36, 24), 96, num_classes, in_channels, **kwargs)


@register_model(**_DENSENET, torchvision="densenet169")
def densenet169(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> DenseNet:
    return _densenet(32, (6, 12, 32, 32), 64, num_classes, in_channels, **kwargs)


@register_model(**_DENSENET, torchvision="densenet201")
def densenet201(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> DenseNet:
    return _densenet(32, (6, 12, 48, 32), 64, num_classes, in_channels, **kwargs)


# Huang et al. 2017, section 3 and Table 2: the CIFAR DenseNet-BC-L-k has a 3x3 conv of 2k channels, three
# dense blocks of (L - 4) / 6 bottleneck layers on 32x32, 16x16 and 8x8 maps, compression 0.5, BN-ReLU, global
# pooling and the classifier.
def _densenet_bc(depth: int, k: int, num_classes: int, in_channels: int, stem: str, kwargs: dict[str, Any]) -> DenseNet:
    n = (depth - 4) // 6
    return _densenet(k, (n, n, n), 2 * k, num_classes, in_channels, stem=stem, **kwargs)


_BC = {**_DENSENET, "input_size": (3, 32, 32)}


@register_model(**_BC)
def densenet_bc_100_12(num_classes: int = 10, in_channels: int = 3, stem: str = "cifar", **kwargs: Any) -> DenseNet:
    return _densenet_bc(100, 12, num_classes, in_channels, stem, kwargs)


@register_model(**_BC)
def densenet_bc_250_24(num_classes: int = 10, in_channels: int = 3, stem: str = "cifar", **kwargs: Any) -> DenseNet:
    return _densenet_bc(250, 24, num_classes, in_channels, stem, kwargs)


@register_model(**_BC)
def densenet_bc_190_40(num_classes: int = 10, in_channels: int = 3, stem: str = "cifar", **kwargs: Any) -> DenseNet:
    return _densenet_bc(190, 40, num_classes, in_channels, stem, kwargs)
