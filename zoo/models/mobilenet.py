"""MobileNet v1.

A. G. Howard, M. Zhu, B. Chen, D. Kalenichenko, W. Wang, T. Weyand, M. Andreetto, H. Adam (2017).
"MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications". arXiv:1704.04861.

The idea: factor a standard convolution into a depthwise 3x3 convolution (one filter per input channel:
spatial filtering) and a pointwise 1x1 convolution (channel mixing), each followed by BN and ReLU. That
costs 1/N + 1/9 of the multiply-adds of a 3x3 convolution with N outputs, so the 28-layer network has
4.2M parameters and 569M MACs at 224 (paper Table 1/2). The width multiplier ``width_mult`` (the paper's
alpha) thins every layer, trading accuracy for roughly alpha^2 of the cost.

Keys follow timm's ``DepthwiseSeparableConv`` (``conv_dw``, ``bn1``, ``conv_pw``, ``bn2``) inside
torchvision-style ``features.<i>``; ``classifier`` is the final fc. ``stem="cifar"``: the first conv has
stride 1, so 32x32 inputs end as 2x2 maps instead of vanishing; same keys.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.models.layers import check_input_size, check_stem
from zoo.registry import register_model

# (output channels, stride) of the 13 depthwise separable layers (paper Table 1)
_LAYERS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


class ConvBNReLU(nn.Sequential):
    """conv - BN - ReLU, keys ``0``/``1`` like torchvision's ``Conv2dNormActivation``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv - BN - ReLU - 1x1 pointwise conv - BN - ReLU (paper Fig. 3, right)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv_pw = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv_dw(x)))  # filter each channel on its own
        return self.relu(self.bn2(self.conv_pw(x)))  # then mix the channels


def _width(c: int, alpha: float) -> int:
    return max(8, int(c * alpha))  # TF-slim's depth(): never thinner than 8 channels


class MobileNetV1(nn.Module):
    """Stem conv 3x3/2 (32) - 13 depthwise separable layers - global average pool - fc."""

    min_size: int | None = None  # from @register_model(min_size=...), set when built by name

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0,
                 dropout: float = 0.0, stem: str = "imagenet") -> None:
        super().__init__()
        check_stem(stem)
        if width_mult <= 0:
            raise ZooError(f"width_mult must be positive; got {width_mult}")
        self.stem = stem
        c = _width(32, width_mult)
        layers: list[nn.Module] = [ConvBNReLU(in_channels, c, 3, stride=2 if stem == "imagenet" else 1)]
        for c_out, s in _LAYERS:
            layers.append(DepthwiseSeparable(c, _width(c_out, width_mult), s))
            c = _width(c_out, width_mult)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(c, num_classes)
        for m in self.modules():  # torchvision's init for its MobileNets
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = check_input_size(x, self.min_size, f"MobileNet v1 (stem={self.stem})")
        return self.features(x)  # N x 1024 x 7 x 7 at 224; N x 1024 x 2 x 2 at 32 (cifar)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 1024
        return self.classifier(self.dropout(x))  # N x num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.classifier.in_features, num_classes)
        nn.init.normal_(self.classifier.weight, 0, 0.01)
        nn.init.zeros_(self.classifier.bias)


@register_model(family="mobilenet", paper="Howard et al., MobileNets: Efficient Convolutional Neural Networks for "
                "Mobile Vision Applications", year=2017, input_size=(3, 224, 224),
                min_size={"imagenet": 32, "cifar": 16})  # the total stride: the last map is 1x1
def mobilenet_v1(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> MobileNetV1:
    return MobileNetV1(num_classes=num_classes, in_channels=in_channels, **kwargs)
