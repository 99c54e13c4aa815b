"""Inception v3.

C. Szegedy, V. Vanhoucke, S. Ioffe, J. Shlens, Z. Wojna (2015). "Rethinking the Inception Architecture for
Computer Vision". CVPR 2016, arXiv:1512.00567.

The idea: factorise convolutions (5x5 -> two 3x3, n x n -> 1 x n then n x 1) and reduce the grid with
parallel stride-2 branches, so no representational bottleneck appears; one auxiliary classifier on the
17x17 grid acts as a regulariser.

Keys are torchvision's (its weights load with ``strict=True``); the blocks are torchvision's ``InceptionA``
to ``InceptionE`` under names that say their network. ``stem="cifar"`` keeps every key and removes the stem's
down-sampling (stride-1 padded convolutions, no stem pools), so a 32x32 image enters Mixed_5b at 32x32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ZooError
from zoo.models.googlenet import imagenet_to_unit_range
from zoo.models.layers import InceptionNet, check_input_size, check_stem
from zoo.models.layers import inception_conv as _conv
from zoo.registry import register_model


class InceptionV3A(nn.Module):
    """35x35 module (paper Figure 5): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg-pool-1x1."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _conv(cin, 64, 1)
        self.branch5x5_1 = _conv(cin, 48, 1)
        self.branch5x5_2 = _conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _conv(cin, 64, 1)
        self.branch3x3dbl_2 = _conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _conv(96, 96, 3, padding=1)
        self.branch_pool = _conv(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b2 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        b4 = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([b1, b2, b3, b4], 1)


class InceptionV3B(nn.Module):
    """35 -> 17 grid reduction (paper Figure 10): stride-2 3x3 | 1x1-3x3-3x3/2 | max-pool/2."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _conv(cin, 64, 1)
        self.branch3x3dbl_2 = _conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _conv(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch3x3(x)
        b2 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b1, b2, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionV3C(nn.Module):
    """17x17 module (paper Figure 6): 7x7 factorised into 1x7 and 7x1."""

    def __init__(self, cin: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = _conv(cin, 192, 1)
        self.branch7x7_1 = _conv(cin, c7, 1)
        self.branch7x7_2 = _conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _conv(cin, c7, 1)
        self.branch7x7dbl_2 = _conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b2 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b3 = self.branch7x7dbl_1(x)
        b3 = self.branch7x7dbl_5(self.branch7x7dbl_4(self.branch7x7dbl_3(self.branch7x7dbl_2(b3))))
        b4 = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([b1, b2, b3, b4], 1)


class InceptionV3D(nn.Module):
    """17 -> 8 grid reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max-pool/2."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _conv(cin, 192, 1)
        self.branch3x3_2 = _conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _conv(cin, 192, 1)
        self.branch7x7x3_2 = _conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _conv(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch3x3_2(self.branch3x3_1(x))
        b2 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b1, b2, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionV3E(nn.Module):
    """8x8 module (paper Figure 7): expanded filter banks, 3x3 split into parallel 1x3 and 3x1."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch1x1 = _conv(cin, 320, 1)
        self.branch3x3_1 = _conv(cin, 384, 1)
        self.branch3x3_2a = _conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _conv(cin, 448, 1)
        self.branch3x3dbl_2 = _conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b2 = self.branch3x3_1(x)
        b2 = torch.cat([self.branch3x3_2a(b2), self.branch3x3_2b(b2)], 1)
        b3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b3 = torch.cat([self.branch3x3dbl_3a(b3), self.branch3x3dbl_3b(b3)], 1)
        b4 = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([b1, b2, b3, b4], 1)


def aux_pool(x: torch.Tensor) -> torch.Tensor:
    """The aux head's 5x5/3 average pool, or an adaptive pool to 5x5 on grids under 17."""
    if min(x.shape[-2:]) < 17:
        return F.adaptive_avg_pool2d(x, 5)
    return F.avg_pool2d(x, kernel_size=5, stride=3)


torch.fx.wrap("aux_pool")  # a choice on the grid size: torch.fx records the call instead of tracing into it


class InceptionV3Aux(nn.Module):
    """Auxiliary head on the 17x17 grid: 5x5/3 avg-pool - 1x1 (128) - 5x5 (768) - fc.

    The fixed pool needs a grid of 17 or more (inputs of 299 and up; torchvision's head fails in training below
    that, e.g. at 224). Smaller grids (224 input, the cifar stem) are average-pooled adaptively to 5x5 instead,
    so the 5x5 convolution always fits; from 17 up the result is exactly torchvision's.
    """

    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = _conv(cin, 128, 1)
        self.conv1 = _conv(128, 768, 5)
        self.conv1.stddev = 0.01  # type: ignore[assignment]  # torchvision's init reads these
        self.fc = nn.Linear(768, num_classes)
        self.fc.stddev = 0.001  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = aux_pool(x)  # N x 768 x 17 x 17 -> N x 768 x 5 x 5
        x = self.conv1(self.conv0(x))  # N x 768 x 1 x 1
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # N x 768
        return self.fc(x)  # N x num_classes


class Inception3(InceptionNet):
    """Inception v3 with torchvision's keys; training mode with the aux head returns :class:`AuxLogits`.

    The auxiliary loss weight 0.4 is the one of Google's reference training script for this network,
    TF-slim's ``train_image_classifier.py`` (``weights=0.4, scope='aux_loss'``); the paper gives none.
    """

    name = "inception_v3"

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = True,
                 transform_input: bool = False, stem: str = "imagenet", dropout: float = 0.5,
                 aux_weight: float = 0.4, init_weights: bool = True) -> None:
        super().__init__()
        check_stem(stem)
        if transform_input and in_channels != 3:
            raise ZooError(f"transform_input re-normalises RGB input; it needs in_channels=3, got {in_channels}")
        self.in_channels, self.stem = in_channels, stem
        self.aux_logits, self.aux_weight, self.transform_input = aux_logits, aux_weight, transform_input
        small = stem == "cifar"
        self.Conv2d_1a_3x3 = _conv(in_channels, 32, 3, stride=1 if small else 2, padding=int(small))
        self.Conv2d_2a_3x3 = _conv(32, 32, 3, padding=int(small))
        self.Conv2d_2b_3x3 = _conv(32, 64, 3, padding=1)
        self.maxpool1: nn.Module = nn.Identity() if small else nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = _conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _conv(80, 192, 3, padding=int(small))
        self.maxpool2: nn.Module = nn.Identity() if small else nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = InceptionV3A(192, pool_features=32)
        self.Mixed_5c = InceptionV3A(256, pool_features=64)
        self.Mixed_5d = InceptionV3A(288, pool_features=64)
        self.Mixed_6a = InceptionV3B(288)
        self.Mixed_6b = InceptionV3C(768, channels_7x7=128)
        self.Mixed_6c = InceptionV3C(768, channels_7x7=160)
        self.Mixed_6d = InceptionV3C(768, channels_7x7=160)
        self.Mixed_6e = InceptionV3C(768, channels_7x7=192)
        self.AuxLogits: InceptionV3Aux | None = InceptionV3Aux(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionV3D(768)
        self.Mixed_7b = InceptionV3E(1280)
        self.Mixed_7c = InceptionV3E(2048)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(2048, num_classes)
        if init_weights:  # torchvision's: truncated normal std 0.1 (aux: 0.01 and 0.001), cut at +-2
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=float(getattr(m, "stddev", 0.1)), a=-2, b=2)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)

    def _features(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = check_input_size(x, self.min_size, self.name, self.in_channels)
        x = imagenet_to_unit_range(x) if self.transform_input else x
        # N x 3 x 299 x 299 (cifar stem: N x 3 x 32 x 32, still 32 x 32 at Mixed_5d)
        x = self.Conv2d_1a_3x3(x)  # N x 32 x 149 x 149
        x = self.Conv2d_2a_3x3(x)  # N x 32 x 147 x 147
        x = self.Conv2d_2b_3x3(x)  # N x 64 x 147 x 147
        x = self.maxpool1(x)  # N x 64 x 73 x 73
        x = self.Conv2d_3b_1x1(x)  # N x 80 x 73 x 73
        x = self.Conv2d_4a_3x3(x)  # N x 192 x 71 x 71
        x = self.maxpool2(x)  # N x 192 x 35 x 35
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))  # N x 288 x 35 x 35
        x = self.Mixed_6a(x)  # N x 768 x 17 x 17
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))  # N x 768 x 17 x 17
        aux = [self.AuxLogits(x)] if with_aux and self.AuxLogits is not None else []
        x = self.Mixed_7a(x)  # N x 1280 x 8 x 8
        x = self.Mixed_7c(self.Mixed_7b(x))  # N x 2048 x 8 x 8
        return x, aux

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.dropout(self.avgpool(x)), 1)  # N x 2048
        return x if pre_logits else self.fc(x)  # N x num_classes


@register_model(family="inception", paper="Szegedy et al., Rethinking the Inception Architecture for Computer "
                "Vision", year=2015, input_size=(3, 299, 299),
                min_size={"imagenet": 75, "cifar": 7},  # 75: torchvision's documented minimum
                torchvision="inception_v3")
def inception_v3(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> Inception3:
    """Inception v3 with its auxiliary head (weight 0.4, training only); ``aux_logits=False`` drops it."""
    return Inception3(num_classes=num_classes, in_channels=in_channels, **kwargs)
