"""Inception v2 (BN-Inception).

S. Ioffe, C. Szegedy (2015). "Batch Normalization: Accelerating Deep Network Training by Reducing Internal
Covariate Shift". ICML 2015, arXiv:1502.03167.

The idea: normalise every layer's inputs over the mini-batch; the Inception network of its appendix
(Figure 5) adds BN everywhere, replaces each 5x5 by two 3x3 convolutions and reduces the grid inside the
modules (3c, 4e) instead of with pooling layers between them.

``stem="cifar"`` keeps every key and removes the stem's down-sampling (stride-1 padded convolution, no stem
pools), so a 32x32 image enters the first Inception stage at 32x32, as the common CIFAR ports do.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.models.layers import InceptionNet, check_input_size, check_stem, trunc_normal_fan_in_
from zoo.models.layers import inception_conv as _conv
from zoo.registry import register_model


class InceptionV2Block(nn.Module):
    """1x1 | 1x1-3x3 | 1x1-3x3-3x3 | pool-1x1. With ``stride=2`` (3c, 4e) the 1x1 branch is absent and the
    max-pool passes through without projection: the grid halves inside the module."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, d3r: int, d3: int, pool: str, proj: int,
                 stride: int = 1) -> None:
        super().__init__()
        self.branch1 = _conv(cin, c1, 1) if c1 else None
        self.branch2 = nn.Sequential(_conv(cin, c3r, 1), _conv(c3r, c3, 3, stride, 1))
        self.branch3 = nn.Sequential(_conv(cin, d3r, 1), _conv(d3r, d3, 3, 1, 1), _conv(d3, d3, 3, stride, 1))
        # padding=1 keeps the stride-2 pool's grid equal to the stride-2 convolutions' for odd sizes too
        pool_layer = nn.MaxPool2d(3, stride, 1) if pool == "max" else nn.AvgPool2d(3, stride, 1)
        self.branch4 = nn.Sequential(pool_layer, _conv(cin, proj, 1)) if proj else nn.Sequential(pool_layer)
        self.out_channels = c1 + c3 + d3 + (proj or cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.branch2(x), self.branch3(x), self.branch4(x)]
        if self.branch1 is not None:
            outs.insert(0, self.branch1(x))
        return torch.cat(outs, 1)


class InceptionV2(InceptionNet):
    """BN-Inception: GoogLeNet with BN after every convolution, 5x5 as two 3x3, three 28x28 modules.

    Channel widths are the paper's Figure 5. Its table prints 576 for the outputs of 4c and 4d, but the widths
    in the same rows add up to 608 (160+160+160+128, 96+192+192+128); we follow the widths, as the released Caffe
    model does. No dropout by default: the paper removes it ("Remove Dropout", section 4.2.1).
    """

    name = "inception_v2"

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, stem: str = "imagenet",
                 dropout: float = 0.0) -> None:
        super().__init__()
        check_stem(stem)
        self.in_channels, self.stem = in_channels, stem
        if stem == "imagenet":
            self.conv1 = _conv(in_channels, 64, 7, 2, 3)
            self.maxpool1: nn.Module = nn.MaxPool2d(3, 2, ceil_mode=True)
        else:
            self.conv1 = _conv(in_channels, 64, 3, 1, 1)
            self.maxpool1 = nn.Identity()
        self.conv2 = _conv(64, 64, 1)
        self.conv3 = _conv(64, 192, 3, 1, 1)
        self.maxpool2: nn.Module = nn.MaxPool2d(3, 2, ceil_mode=True) if stem == "imagenet" else nn.Identity()
        B = InceptionV2Block
        self.inception3a = B(192, 64, 64, 64, 64, 96, "avg", 32)  # 256
        self.inception3b = B(256, 64, 64, 96, 64, 96, "avg", 64)  # 320
        self.inception3c = B(320, 0, 128, 160, 64, 96, "max", 0, stride=2)  # 576
        self.inception4a = B(576, 224, 64, 96, 96, 128, "avg", 128)  # 576
        self.inception4b = B(576, 192, 96, 128, 96, 128, "avg", 128)  # 576
        self.inception4c = B(576, 160, 128, 160, 128, 160, "avg", 128)  # 608
        self.inception4d = B(608, 96, 128, 192, 160, 192, "avg", 128)  # 608
        self.inception4e = B(608, 0, 128, 192, 192, 256, "max", 0, stride=2)  # 1056
        self.inception5a = B(1056, 352, 192, 320, 160, 224, "avg", 128)  # 1024
        self.inception5b = B(1024, 352, 192, 320, 192, 224, "max", 128)  # 1024
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)
        trunc_normal_fan_in_(self)

    def _features(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = check_input_size(x, self.min_size, self.name, self.in_channels)
        # N x 3 x 224 x 224 (cifar stem: N x 3 x 32 x 32 and 32 x 32 up to inception3c)
        x = self.maxpool1(self.conv1(x))  # N x 64 x 56 x 56
        x = self.maxpool2(self.conv3(self.conv2(x)))  # N x 192 x 28 x 28
        x = self.inception3b(self.inception3a(x))  # N x 320 x 28 x 28
        x = self.inception3c(x)  # N x 576 x 14 x 14
        x = self.inception4b(self.inception4a(x))  # N x 576 x 14 x 14
        x = self.inception4d(self.inception4c(x))  # N x 608 x 14 x 14
        x = self.inception4e(x)  # N x 1056 x 7 x 7
        x = self.inception5b(self.inception5a(x))  # N x 1024 x 7 x 7
        return x, []


@register_model(family="inception", paper="Ioffe & Szegedy, Batch Normalization: Accelerating Deep Network "
                "Training by Reducing Internal Covariate Shift", year=2015, input_size=(3, 224, 224),
                min_size={"imagenet": 7, "cifar": 1})  # the smallest sides that run (padded reductions)
def inception_v2(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> InceptionV2:
    """BN-Inception (the appendix network of the batch-norm paper)."""
    return InceptionV2(num_classes=num_classes, in_channels=in_channels, **kwargs)
