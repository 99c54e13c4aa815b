"""VGG.

K. Simonyan, A. Zisserman (2014). "Very Deep Convolutional Networks for Large-Scale Image Recognition".
ICLR 2015 (arXiv:1409.1556).

The idea: depth with the smallest filter. Stacks of 3x3 convolutions (two have a 5x5 receptive field and
three a 7x7 one, with fewer weights and more non-linearities) between 2x2 max-pools that halve the size
and double the width (64 -> 512), then three fully connected layers. Configurations A, B, D and E of the
paper's Table 1 are vgg11, vgg13, vgg16 and vgg19; ``_bn`` adds batch normalisation after each conv
(torchvision's variant, not in the paper); ``norm=`` puts another of zoo.models.norms there.

torchvision's keys and init: ``features.<i>`` numbered as its Sequential, ``classifier.0/3/6``.
``stem="cifar"``: the 7x7 average pool is global (the 32x32 input leaves 1x1x512), the classifier is
512-512-classes (PyTorch's default init there), and the pools round up (ceil mode) so 28x28 inputs reach
1x1 too; same keys.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from zoo.models.layers import check_input_size, check_stem
from zoo.models.norms import make_norm
from zoo.registry import register_model

# Table 1 of the paper: numbers are 3x3 conv widths, "M" a 2x2 max-pool.
CFGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """``features`` (3x3 convs, optional BN, ReLU, max-pools) - ``avgpool`` - ``classifier`` (fc-fc-fc)."""

    min_size: int | None = None  # from @register_model(min_size=...), set when built by name

    def __init__(self, cfg: list[int | str], num_classes: int = 1000, in_channels: int = 3, batch_norm: bool = False,
                 dropout: float = 0.5, hidden: int | None = None, stem: str = "imagenet", norm: str | None = None,
                 norm_groups: int = 32) -> None:
        super().__init__()
        check_stem(stem)
        self.stem = stem
        small = stem == "cifar"
        # norm (zoo.models.norms) replaces the _bn models' BatchNorm2d at the same index (same keys for batch)
        norm = norm or ("batch" if batch_norm else "none")
        layers: list[nn.Module] = []
        c_in = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=small))
            else:
                layers.append(nn.Conv2d(c_in, int(v), 3, padding=1))
                if norm != "none":
                    layers.append(make_norm(norm, int(v), norm_groups, dim=2))
                layers.append(nn.ReLU(inplace=True))
                c_in = int(v)
        self.features = nn.Sequential(*layers)
        pooled = 1 if small else 7
        hidden = hidden or (512 if small else 4096)
        self.avgpool = nn.AdaptiveAvgPool2d((pooled, pooled))
        self.classifier = nn.Sequential(
            nn.Linear(c_in * pooled * pooled, hidden),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear) and not small:
                # N(0, 0.01) suits 25088-wide inputs; on the cifar variant's 512-wide layers it would shrink the
                # signal ~4x per layer, so that one keeps PyTorch's default (uniform +-1/sqrt(fan_in)).
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = check_input_size(x, self.min_size, f"VGG (stem={self.stem})")
        return self.features(x)  # N x 512 x 7 x 7 at 224; N x 512 x 1 x 1 at 32 or 28 (cifar)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 25088 (imagenet), N x 512 (cifar)
        return self.classifier(x)  # N x num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier[-1] = nn.Linear(self.classifier[-1].in_features, num_classes)
        if self.stem == "imagenet":
            nn.init.normal_(self.classifier[-1].weight, 0, 0.01)
            nn.init.zeros_(self.classifier[-1].bias)


_PAPER = "Simonyan, Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition"


def _vgg(cfg: str, batch_norm: bool, num_classes: int, in_channels: int, **kwargs) -> VGG:
    return VGG(CFGS[cfg], num_classes=num_classes, in_channels=in_channels, batch_norm=batch_norm, **kwargs)


def _reg(name: str) -> Callable[[Callable[..., VGG]], Callable[..., VGG]]:
    # Five 2x2 pools: 32 leaves 1x1 (ceil mode in the cifar variant: any side >= 1 does).
    return register_model(name, family="vgg", paper=_PAPER, year=2014, input_size=(3, 224, 224),
                          min_size={"imagenet": 32, "cifar": 1},
                          torchvision=name)


@_reg("vgg11")
def vgg11(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> VGG:
    return _vgg("A", False, num_classes, in_channels, **kwargs)


@_reg("vgg11_bn")
def vgg11_bn(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> VGG:
    return _vgg("A", True, num_classes, in_channels, **kwargs)


@_reg("vgg13")
def vgg13(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> VGG:
    return _vgg("B", False, num_classes, in_channels, **kwargs)


@_reg("vgg13_bn")
def vgg13_bn(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> VGG:
    return _vgg("B", True, num_classes, in_channels, **kwargs)


@_reg("vgg16")
def vgg16(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> VGG:
    return _vgg("D", False, num_classes, in_channels, **kwargs)


@_reg("vgg16_bn")
def vgg16_bn(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> VGG:
    return _vgg("D", True, num_classes, in_channels, **kwargs)


@_reg("vgg19")
def vgg19(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> VGG:
    return _vgg("E", False, num_classes, in_channels, **kwargs)


@_reg("vgg19_bn")
def vgg19_bn(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> VGG:
    return _vgg("E", True, num_classes, in_channels, **kwargs)
