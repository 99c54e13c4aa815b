"""Inception-v4.

C. Szegedy, S. Ioffe, V. Vanhoucke, A. Alemi (2016). "Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning". AAAI 2017, arXiv:1602.07261.

The idea: a uniform, deeper Inception: one stem (Figure 3), then 4 Inception-A, 7 Inception-B and
3 Inception-C modules joined by two reduction modules.

Keys are those of Cadene's ``pretrainedmodels`` port (``features.N``, ``last_linear``), the de facto PyTorch
weight files (timm's ``inception_v4`` has the same layout). ``stem="cifar"`` keeps every key and removes the
stem's down-sampling (stride-1 'same' convolutions and pools), so a 32x32 image enters Inception-A at 32x32.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.models.layers import InceptionNet, check_input_size, check_stem, inception_avg_pool, trunc_normal_fan_in_
from zoo.models.layers import inception_conv as _conv
from zoo.registry import register_model


def _grid(small: bool, stride: int = 2) -> tuple[int, int]:
    """(stride, padding) of a stem reduction: 3x3 stride 2 unpadded, or 3x3 stride 1 'same' for the cifar stem."""
    return (1, 1) if small else (stride, 0)


class InceptionV4Stem3a(nn.Module):
    def __init__(self, small: bool = False) -> None:
        super().__init__()
        s, p = _grid(small)
        self.maxpool = nn.MaxPool2d(3, stride=s, padding=p)
        self.conv = _conv(64, 96, 3, stride=s, padding=p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.maxpool(x), self.conv(x)], 1)  # N x 160


class InceptionV4Stem4a(nn.Module):
    def __init__(self, small: bool = False) -> None:
        super().__init__()
        p = int(small)
        self.branch0 = nn.Sequential(_conv(160, 64, 1), _conv(64, 96, 3, padding=p))
        self.branch1 = nn.Sequential(_conv(160, 64, 1), _conv(64, 64, (1, 7), padding=(0, 3)),
                                     _conv(64, 64, (7, 1), padding=(3, 0)), _conv(64, 96, 3, padding=p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x)], 1)  # N x 192


class InceptionV4Stem5a(nn.Module):
    def __init__(self, small: bool = False) -> None:
        super().__init__()
        s, p = _grid(small)
        self.conv = _conv(192, 192, 3, stride=s, padding=p)
        self.maxpool = nn.MaxPool2d(3, stride=s, padding=p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.maxpool(x)], 1)  # N x 384


class InceptionV4A(nn.Module):
    """35x35 module (Figure 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = _conv(384, 96, 1)
        self.branch1 = nn.Sequential(_conv(384, 64, 1), _conv(64, 96, 3, padding=1))
        self.branch2 = nn.Sequential(_conv(384, 64, 1), _conv(64, 96, 3, padding=1), _conv(96, 96, 3, padding=1))
        self.branch3 = nn.Sequential(inception_avg_pool(), _conv(384, 96, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)  # N x 384


class InceptionV4ReductionA(nn.Module):
    """35 -> 17 (Figure 7 with k, l, m, n = 192, 224, 256, 384)."""

    def __init__(self, cin: int = 384, k: int = 192, l: int = 224, m: int = 256, n: int = 384) -> None:  # noqa: E741
        super().__init__()
        self.branch0 = _conv(cin, n, 3, stride=2)
        self.branch1 = nn.Sequential(_conv(cin, k, 1), _conv(k, l, 3, padding=1), _conv(l, m, 3, stride=2))
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)  # N x (n + m + cin)


class InceptionV4B(nn.Module):
    """17x17 module (Figure 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = _conv(1024, 384, 1)
        self.branch1 = nn.Sequential(_conv(1024, 192, 1), _conv(192, 224, (1, 7), padding=(0, 3)),
                                     _conv(224, 256, (7, 1), padding=(3, 0)))
        self.branch2 = nn.Sequential(_conv(1024, 192, 1), _conv(192, 192, (7, 1), padding=(3, 0)),
                                     _conv(192, 224, (1, 7), padding=(0, 3)), _conv(224, 224, (7, 1), padding=(3, 0)),
                                     _conv(224, 256, (1, 7), padding=(0, 3)))
        self.branch3 = nn.Sequential(inception_avg_pool(), _conv(1024, 128, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)  # N x 1024


class InceptionV4ReductionB(nn.Module):
    """17 -> 8 (Figure 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(_conv(1024, 192, 1), _conv(192, 192, 3, stride=2))
        self.branch1 = nn.Sequential(_conv(1024, 256, 1), _conv(256, 256, (1, 7), padding=(0, 3)),
                                     _conv(256, 320, (7, 1), padding=(3, 0)), _conv(320, 320, 3, stride=2))
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)  # N x 1536


class InceptionV4C(nn.Module):
    """8x8 module (Figure 6): the 3x3s split into parallel 1x3 and 3x1."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = _conv(1536, 256, 1)
        self.branch1_0 = _conv(1536, 384, 1)
        self.branch1_1a = _conv(384, 256, (1, 3), padding=(0, 1))
        self.branch1_1b = _conv(384, 256, (3, 1), padding=(1, 0))
        self.branch2_0 = _conv(1536, 384, 1)
        self.branch2_1 = _conv(384, 448, (3, 1), padding=(1, 0))
        self.branch2_2 = _conv(448, 512, (1, 3), padding=(0, 1))
        self.branch2_3a = _conv(512, 256, (1, 3), padding=(0, 1))
        self.branch2_3b = _conv(512, 256, (3, 1), padding=(1, 0))
        self.branch3 = nn.Sequential(inception_avg_pool(), _conv(1536, 256, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1_0(x)
        b2 = self.branch2_2(self.branch2_1(self.branch2_0(x)))
        outs = [self.branch0(x), self.branch1_1a(b1), self.branch1_1b(b1),
                self.branch2_3a(b2), self.branch2_3b(b2), self.branch3(x)]
        return torch.cat(outs, 1)  # N x 1536


class InceptionV4(InceptionNet):
    """Inception-v4: stem (Figure 3), 4 x Inception-A, Reduction-A, 7 x Inception-B, Reduction-B, 3 x Inception-C.

    Dropout 0.2 before the classifier is the paper's "keep 0.8" (Figure 9).
    """

    name = "inception_v4"
    classifier = "last_linear"

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, stem: str = "imagenet",
                 dropout: float = 0.2) -> None:
        super().__init__()
        check_stem(stem)
        self.in_channels, self.stem = in_channels, stem
        small = stem == "cifar"
        s, p = _grid(small)
        self.features = nn.Sequential(
            _conv(in_channels, 32, 3, stride=s, padding=p),
            _conv(32, 32, 3, padding=int(small)),
            _conv(32, 64, 3, padding=1),
            InceptionV4Stem3a(small),
            InceptionV4Stem4a(small),
            InceptionV4Stem5a(small),
            *[InceptionV4A() for _ in range(4)],
            InceptionV4ReductionA(),
            *[InceptionV4B() for _ in range(7)],
            InceptionV4ReductionB(),
            *[InceptionV4C() for _ in range(3)],
        )
        self.dropout = nn.Dropout(dropout)
        self.last_linear = nn.Linear(1536, num_classes)
        trunc_normal_fan_in_(self)

    def _features(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = check_input_size(x, self.min_size, self.name, self.in_channels)
        # N x 3 x 299 x 299 -> stem: N x 384 x 35 x 35 (cifar stem: 32 x 32) -> Inception-A: N x 384 x 35 x 35
        # -> Reduction-A: N x 1024 x 17 x 17 -> Inception-B -> Reduction-B: N x 1536 x 8 x 8 -> Inception-C
        return self.features(x), []  # N x 1536 x 8 x 8


@register_model(family="inception", paper="Szegedy et al., Inception-v4, Inception-ResNet and the Impact of "
                "Residual Connections on Learning", year=2016, input_size=(3, 299, 299),
                min_size={"imagenet": 75, "cifar": 7})
def inception_v4(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> InceptionV4:
    return InceptionV4(num_classes=num_classes, in_channels=in_channels, **kwargs)
