"""Inception-ResNet-v2.

C. Szegedy, S. Ioffe, V. Vanhoucke, A. Alemi (2016). "Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning". AAAI 2017, arXiv:1602.07261.

The idea: Inception modules as residual branches, ``x + scale * branch(x)``, the branch scaled by 0.1-0.3
before the addition (section 3.3: without it the widest networks died early in training); it trains much
faster than Inception-v4 at the same accuracy.

Keys are those of Cadene's ``pretrainedmodels`` port (``mixed_5b``, ``repeat``, ``block8``, ``last_linear``),
the de facto PyTorch weight files (timm's ``inception_resnet_v2`` too). The final ``block8`` adds its branch
unscaled (scale 1.0) and has no ReLU, as TF-slim's ``inception_resnet_v2`` (``block8(net, activation_fn=None)``
with the default scale 1.0), Cadene's port and timm. ``stem="cifar"`` keeps every key and removes the stem's
down-sampling (stride-1 padded convolutions, no stem pools), so a 32x32 image enters mixed_5b at 32x32.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.models.layers import InceptionNet, check_input_size, check_stem, inception_avg_pool, trunc_normal_fan_in_
from zoo.models.layers import inception_conv as _conv
from zoo.registry import register_model


class InceptionResNetV2Stem5b(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.branch0 = _conv(192, 96, 1)
        self.branch1 = nn.Sequential(_conv(192, 48, 1), _conv(48, 64, 5, padding=2))
        self.branch2 = nn.Sequential(_conv(192, 64, 1), _conv(64, 96, 3, padding=1), _conv(96, 96, 3, padding=1))
        self.branch3 = nn.Sequential(inception_avg_pool(), _conv(192, 64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)  # N x 320


class InceptionResNetV2A(nn.Module):
    """Inception-ResNet-A (Figure 16): x + scale * conv1x1(concat(branches)), then ReLU."""

    def __init__(self, scale: float = 0.17) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = _conv(320, 32, 1)
        self.branch1 = nn.Sequential(_conv(320, 32, 1), _conv(32, 32, 3, padding=1))
        self.branch2 = nn.Sequential(_conv(320, 32, 1), _conv(32, 48, 3, padding=1), _conv(48, 64, 3, padding=1))
        self.conv2d = nn.Conv2d(128, 320, kernel_size=1)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d(torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1))
        return self.relu(x + self.scale * out)  # N x 320


class InceptionResNetV2ReductionA(nn.Module):
    """Reduction-A with k, l, m, n = 256, 256, 384, 384 (Table 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = _conv(320, 384, 3, stride=2)
        self.branch1 = nn.Sequential(_conv(320, 256, 1), _conv(256, 256, 3, padding=1), _conv(256, 384, 3, stride=2))
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)  # N x 1088


class InceptionResNetV2B(nn.Module):
    """Inception-ResNet-B (Figure 17)."""

    def __init__(self, scale: float = 0.10) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = _conv(1088, 192, 1)
        self.branch1 = nn.Sequential(_conv(1088, 128, 1), _conv(128, 160, (1, 7), padding=(0, 3)),
                                     _conv(160, 192, (7, 1), padding=(3, 0)))
        self.conv2d = nn.Conv2d(384, 1088, kernel_size=1)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d(torch.cat([self.branch0(x), self.branch1(x)], 1))
        return self.relu(x + self.scale * out)  # N x 1088


class InceptionResNetV2ReductionB(nn.Module):
    """Reduction-B (Figure 18)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(_conv(1088, 256, 1), _conv(256, 384, 3, stride=2))
        self.branch1 = nn.Sequential(_conv(1088, 256, 1), _conv(256, 288, 3, stride=2))
        self.branch2 = nn.Sequential(_conv(1088, 256, 1), _conv(256, 288, 3, padding=1), _conv(288, 320, 3, stride=2))
        self.branch3 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)  # N x 2080


class InceptionResNetV2C(nn.Module):
    """Inception-ResNet-C (Figure 19): x + scale * conv1x1(concat(branches)), then ReLU; the network's last one
    is built with ``scale=1.0, no_relu=True``."""

    def __init__(self, scale: float = 0.20, no_relu: bool = False) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = _conv(2080, 192, 1)
        self.branch1 = nn.Sequential(_conv(2080, 192, 1), _conv(192, 224, (1, 3), padding=(0, 1)),
                                     _conv(224, 256, (3, 1), padding=(1, 0)))
        self.conv2d = nn.Conv2d(448, 2080, kernel_size=1)
        self.relu = None if no_relu else nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x + self.scale * self.conv2d(torch.cat([self.branch0(x), self.branch1(x)], 1))
        return out if self.relu is None else self.relu(out)  # N x 2080


class InceptionResNetV2(InceptionNet):
    """Inception-ResNet-v2: v3's stem, 10 x Block35 (scale 0.17), Reduction-A, 20 x Block17 (0.10), Reduction-B,
    10 x Block8 (0.20), a 1x1 conv to 1536 and the classifier (dropout 0.2, the paper's keep 0.8)."""

    name = "inception_resnet_v2"
    classifier = "last_linear"

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, stem: str = "imagenet",
                 dropout: float = 0.2) -> None:
        super().__init__()
        check_stem(stem)
        self.in_channels, self.stem = in_channels, stem
        small = stem == "cifar"
        p = int(small)
        self.conv2d_1a = _conv(in_channels, 32, 3, stride=1 if small else 2, padding=p)
        self.conv2d_2a = _conv(32, 32, 3, padding=p)
        self.conv2d_2b = _conv(32, 64, 3, padding=1)
        self.maxpool_3a: nn.Module = nn.Identity() if small else nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = _conv(64, 80, 1)
        self.conv2d_4a = _conv(80, 192, 3, padding=p)
        self.maxpool_5a: nn.Module = nn.Identity() if small else nn.MaxPool2d(3, stride=2)
        self.mixed_5b = InceptionResNetV2Stem5b()
        self.repeat = nn.Sequential(*[InceptionResNetV2A(scale=0.17) for _ in range(10)])
        self.mixed_6a = InceptionResNetV2ReductionA()
        self.repeat_1 = nn.Sequential(*[InceptionResNetV2B(scale=0.10) for _ in range(20)])
        self.mixed_7a = InceptionResNetV2ReductionB()
        self.repeat_2 = nn.Sequential(*[InceptionResNetV2C(scale=0.20) for _ in range(9)])
        self.block8 = InceptionResNetV2C(scale=1.0, no_relu=True)  # TF-slim, Cadene, timm: unscaled
        self.conv2d_7b = _conv(2080, 1536, 1)
        self.dropout = nn.Dropout(dropout)
        self.last_linear = nn.Linear(1536, num_classes)
        trunc_normal_fan_in_(self)

    def _features(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = check_input_size(x, self.min_size, self.name, self.in_channels)
        # N x 3 x 299 x 299 (cifar stem: N x 3 x 32 x 32, still 32 x 32 at mixed_5b)
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))  # N x 64 x 147 x 147
        x = self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x)))  # N x 192 x 71 x 71
        x = self.mixed_5b(self.maxpool_5a(x))  # N x 320 x 35 x 35
        x = self.mixed_6a(self.repeat(x))  # N x 1088 x 17 x 17
        x = self.mixed_7a(self.repeat_1(x))  # N x 2080 x 8 x 8
        x = self.conv2d_7b(self.block8(self.repeat_2(x)))  # N x 1536 x 8 x 8
        return x, []


@register_model(family="inception", paper="Szegedy et al., Inception-v4, Inception-ResNet and the Impact of "
                "Residual Connections on Learning", year=2016, input_size=(3, 299, 299),
                min_size={"imagenet": 75, "cifar": 7})
def inception_resnet_v2(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> InceptionResNetV2:
    return InceptionResNetV2(num_classes=num_classes, in_channels=in_channels, **kwargs)
