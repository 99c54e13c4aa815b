"""Inception v2 (BN-Inception), v3, v4 and Inception-ResNet-v2.

- S. Ioffe, C. Szegedy (2015). "Batch Normalization: Accelerating Deep Network Training by Reducing Internal
  Covariate Shift". ICML 2015, arXiv:1502.03167. Idea: normalise every layer's inputs over the mini-batch;
  the Inception network of its appendix (Figure 5) adds BN everywhere, replaces each 5x5 by two 3x3
  convolutions and reduces the grid inside the modules (3c, 4e) instead of with pooling layers between them.
- C. Szegedy, V. Vanhoucke, S. Ioffe, J. Shlens, Z. Wojna (2015). "Rethinking the Inception Architecture for
  Computer Vision". CVPR 2016, arXiv:1512.00567. Idea: factorise convolutions (5x5 -> two 3x3, n x n -> 1 x n
  then n x 1) and reduce the grid with parallel stride-2 branches, so no representational bottleneck appears;
  one auxiliary classifier on the 17x17 grid acts as a regulariser.
- C. Szegedy, S. Ioffe, V. Vanhoucke, A. Alemi (2016). "Inception-v4, Inception-ResNet and the Impact of
  Residual Connections on Learning". AAAI 2017, arXiv:1602.07261. Idea: a uniform, deeper Inception (v4), and
  Inception modules as residual branches whose output is scaled by 0.1-0.3 before the addition (IRv2), which
  trains much faster at the same accuracy.

``inception_v3`` has torchvision's keys (its weights load with ``strict=True``). ``inception_v4`` and
``inception_resnet_v2`` have the keys of Cadene's ``pretrainedmodels`` ports (``features.N``, ``mixed_5b``,
``repeat``, ``last_linear``), the de facto PyTorch weight files for them.
``stem="cifar"`` keeps every key and removes the stem's down-sampling (stride-1 padded convolutions, no
stem pools), so a 32x32 image enters the first Inception stage at 32x32, as the common CIFAR ports do.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ZooError
from zoo.models.googlenet import check_input, check_stem, imagenet_to_unit_range
from zoo.models.layers import AuxLogits, BasicConv2d
from zoo.registry import register_model


def _conv(cin: int, cout: int, k: int | tuple[int, int], stride: int = 1,
          padding: int | tuple[int, int] = 0) -> BasicConv2d:
    return BasicConv2d(cin, cout, kernel_size=k, stride=stride, padding=padding)


def trunc_normal_fan_in_(model: nn.Module) -> None:
    """TF-slim's Inception init (``variance_scaling_initializer``): truncated normal, He std sqrt(2 / fan_in).

    Cut at two standard deviations; the std is divided by 0.8796 (the std of a unit normal truncated at +-2)
    so the kept weights still have variance 2 / fan_in. BatchNorm starts as the identity, biases at zero.
    """
    bound = math.erf(2 / math.sqrt(2))  # 2 * Phi(2) - 1
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and not m.weight.is_meta:  # meta: nothing to sample
            fan_in = m.weight[0].numel()
            std = math.sqrt(2.0 / fan_in) / 0.87962566103423978
            with torch.no_grad():  # inverse-CDF sampling: one pass (nn.init.trunc_normal_ rejects and redraws)
                m.weight.uniform_(-bound, bound).erfinv_().mul_(std * math.sqrt(2)).clamp_(-2 * std, 2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class _Net(nn.Module):
    """The shared timm-style interface: ``forward_features`` (last map), ``forward_head`` (pool, dropout, fc)."""

    name: str
    classifier: str = "fc"

    def _features(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(x, with_aux=False)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # N x C
        x = self.dropout(x)
        return x if pre_logits else getattr(self, self.classifier)(x)  # N x num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor | AuxLogits:
        use_aux = self.training and getattr(self, "aux_logits", False)
        x, aux = self._features(x, with_aux=use_aux)
        logits = self.forward_head(x)
        if use_aux:
            return AuxLogits(logits, tuple(aux), (self.aux_weight,) * len(aux))
        return logits

    def reset_classifier(self, num_classes: int) -> None:
        fc = getattr(self, self.classifier)
        setattr(self, self.classifier, nn.Linear(fc.in_features, num_classes))
        aux = getattr(self, "AuxLogits", None)
        if aux is not None:
            aux.fc = nn.Linear(aux.fc.in_features, num_classes)


# --------------------------------------------------------------------------------------------------------------
# Inception v2 / BN-Inception (Ioffe & Szegedy 2015, appendix Figure 5)
# --------------------------------------------------------------------------------------------------------------


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


class InceptionV2(_Net):
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
        self.min_size = {"imagenet": 7, "cifar": 1}[stem]  # smallest sides that run (padded reductions)
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
        check_input(x, self.min_size, self.in_channels, self.name)
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


# --------------------------------------------------------------------------------------------------------------
# Inception v3 (Szegedy et al. 2015), torchvision's keys
# --------------------------------------------------------------------------------------------------------------


class InceptionA(nn.Module):
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


class InceptionB(nn.Module):
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


class InceptionC(nn.Module):
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


class InceptionD(nn.Module):
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


class InceptionE(nn.Module):
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


class InceptionAux(nn.Module):
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
        # N x 768 x 17 x 17
        small = min(x.shape[-2:]) < 17
        x = F.adaptive_avg_pool2d(x, 5) if small else F.avg_pool2d(x, kernel_size=5, stride=3)  # N x 768 x 5 x 5
        x = self.conv1(self.conv0(x))  # N x 768 x 1 x 1
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # N x 768
        return self.fc(x)  # N x num_classes


class Inception3(_Net):
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
        self.min_size = {"imagenet": 75, "cifar": 7}[stem]  # 75: torchvision's documented minimum
        self.aux_logits, self.aux_weight, self.transform_input = aux_logits, aux_weight, transform_input
        small = stem == "cifar"
        self.Conv2d_1a_3x3 = _conv(in_channels, 32, 3, stride=1 if small else 2, padding=int(small))
        self.Conv2d_2a_3x3 = _conv(32, 32, 3, padding=int(small))
        self.Conv2d_2b_3x3 = _conv(32, 64, 3, padding=1)
        self.maxpool1: nn.Module = nn.Identity() if small else nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = _conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _conv(80, 192, 3, padding=int(small))
        self.maxpool2: nn.Module = nn.Identity() if small else nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.AuxLogits: InceptionAux | None = InceptionAux(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280)
        self.Mixed_7c = InceptionE(2048)
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
        check_input(x, self.min_size, self.in_channels, self.name)
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


# --------------------------------------------------------------------------------------------------------------
# Inception v4 (Szegedy et al. 2016, Figures 3-9), Cadene's keys
# --------------------------------------------------------------------------------------------------------------


def _grid(small: bool, stride: int = 2) -> tuple[int, int]:
    """(stride, padding) of a stem reduction: 3x3 stride 2 unpadded, or 3x3 stride 1 'same' for the cifar stem."""
    return (1, 1) if small else (stride, 0)


class Mixed_3a(nn.Module):  # noqa: N801 (Cadene's key names)
    def __init__(self, small: bool = False) -> None:
        super().__init__()
        s, p = _grid(small)
        self.maxpool = nn.MaxPool2d(3, stride=s, padding=p)
        self.conv = _conv(64, 96, 3, stride=s, padding=p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.maxpool(x), self.conv(x)], 1)  # N x 160


class Mixed_4a(nn.Module):  # noqa: N801
    def __init__(self, small: bool = False) -> None:
        super().__init__()
        p = int(small)
        self.branch0 = nn.Sequential(_conv(160, 64, 1), _conv(64, 96, 3, padding=p))
        self.branch1 = nn.Sequential(_conv(160, 64, 1), _conv(64, 64, (1, 7), padding=(0, 3)),
                                     _conv(64, 64, (7, 1), padding=(3, 0)), _conv(64, 96, 3, padding=p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x)], 1)  # N x 192


class Mixed_5a(nn.Module):  # noqa: N801
    def __init__(self, small: bool = False) -> None:
        super().__init__()
        s, p = _grid(small)
        self.conv = _conv(192, 192, 3, stride=s, padding=p)
        self.maxpool = nn.MaxPool2d(3, stride=s, padding=p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.maxpool(x)], 1)  # N x 384


def _avg_pool() -> nn.AvgPool2d:
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class Inception_A(nn.Module):  # noqa: N801
    """35x35 module (Figure 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = _conv(384, 96, 1)
        self.branch1 = nn.Sequential(_conv(384, 64, 1), _conv(64, 96, 3, padding=1))
        self.branch2 = nn.Sequential(_conv(384, 64, 1), _conv(64, 96, 3, padding=1), _conv(96, 96, 3, padding=1))
        self.branch3 = nn.Sequential(_avg_pool(), _conv(384, 96, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)  # N x 384


class Reduction_A(nn.Module):  # noqa: N801
    """35 -> 17 (Figure 7 with k, l, m, n = 192, 224, 256, 384)."""

    def __init__(self, cin: int = 384, k: int = 192, l: int = 224, m: int = 256, n: int = 384) -> None:  # noqa: E741
        super().__init__()
        self.branch0 = _conv(cin, n, 3, stride=2)
        self.branch1 = nn.Sequential(_conv(cin, k, 1), _conv(k, l, 3, padding=1), _conv(l, m, 3, stride=2))
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)  # N x (n + m + cin)


class Inception_B(nn.Module):  # noqa: N801
    """17x17 module (Figure 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = _conv(1024, 384, 1)
        self.branch1 = nn.Sequential(_conv(1024, 192, 1), _conv(192, 224, (1, 7), padding=(0, 3)),
                                     _conv(224, 256, (7, 1), padding=(3, 0)))
        self.branch2 = nn.Sequential(_conv(1024, 192, 1), _conv(192, 192, (7, 1), padding=(3, 0)),
                                     _conv(192, 224, (1, 7), padding=(0, 3)), _conv(224, 224, (7, 1), padding=(3, 0)),
                                     _conv(224, 256, (1, 7), padding=(0, 3)))
        self.branch3 = nn.Sequential(_avg_pool(), _conv(1024, 128, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)  # N x 1024


class Reduction_B(nn.Module):  # noqa: N801
    """17 -> 8 (Figure 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(_conv(1024, 192, 1), _conv(192, 192, 3, stride=2))
        self.branch1 = nn.Sequential(_conv(1024, 256, 1), _conv(256, 256, (1, 7), padding=(0, 3)),
                                     _conv(256, 320, (7, 1), padding=(3, 0)), _conv(320, 320, 3, stride=2))
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)  # N x 1536


class Inception_C(nn.Module):  # noqa: N801
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
        self.branch3 = nn.Sequential(_avg_pool(), _conv(1536, 256, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1_0(x)
        b2 = self.branch2_2(self.branch2_1(self.branch2_0(x)))
        outs = [self.branch0(x), self.branch1_1a(b1), self.branch1_1b(b1),
                self.branch2_3a(b2), self.branch2_3b(b2), self.branch3(x)]
        return torch.cat(outs, 1)  # N x 1536


class InceptionV4(_Net):
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
        self.min_size = {"imagenet": 75, "cifar": 7}[stem]
        small = stem == "cifar"
        s, p = _grid(small)
        self.features = nn.Sequential(
            _conv(in_channels, 32, 3, stride=s, padding=p),
            _conv(32, 32, 3, padding=int(small)),
            _conv(32, 64, 3, padding=1),
            Mixed_3a(small),
            Mixed_4a(small),
            Mixed_5a(small),
            *[Inception_A() for _ in range(4)],
            Reduction_A(),
            *[Inception_B() for _ in range(7)],
            Reduction_B(),
            *[Inception_C() for _ in range(3)],
        )
        self.dropout = nn.Dropout(dropout)
        self.last_linear = nn.Linear(1536, num_classes)
        trunc_normal_fan_in_(self)

    def _features(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        check_input(x, self.min_size, self.in_channels, self.name)
        # N x 3 x 299 x 299 -> stem: N x 384 x 35 x 35 (cifar stem: 32 x 32) -> Inception-A: N x 384 x 35 x 35
        # -> Reduction-A: N x 1024 x 17 x 17 -> Inception-B -> Reduction-B: N x 1536 x 8 x 8 -> Inception-C
        return self.features(x), []  # N x 1536 x 8 x 8


# --------------------------------------------------------------------------------------------------------------
# Inception-ResNet-v2 (Szegedy et al. 2016, Figures 3, 16-19), Cadene's keys
# --------------------------------------------------------------------------------------------------------------


class Mixed_5b(nn.Module):  # noqa: N801
    def __init__(self) -> None:
        super().__init__()
        self.branch0 = _conv(192, 96, 1)
        self.branch1 = nn.Sequential(_conv(192, 48, 1), _conv(48, 64, 5, padding=2))
        self.branch2 = nn.Sequential(_conv(192, 64, 1), _conv(64, 96, 3, padding=1), _conv(96, 96, 3, padding=1))
        self.branch3 = nn.Sequential(_avg_pool(), _conv(192, 64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)  # N x 320


class Block35(nn.Module):
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


class Mixed_6a(nn.Module):  # noqa: N801
    """Reduction-A with k, l, m, n = 256, 256, 384, 384 (Table 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = _conv(320, 384, 3, stride=2)
        self.branch1 = nn.Sequential(_conv(320, 256, 1), _conv(256, 256, 3, padding=1), _conv(256, 384, 3, stride=2))
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)  # N x 1088


class Block17(nn.Module):
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


class Mixed_7a(nn.Module):  # noqa: N801
    """Reduction-B (Figure 18)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(_conv(1088, 256, 1), _conv(256, 384, 3, stride=2))
        self.branch1 = nn.Sequential(_conv(1088, 256, 1), _conv(256, 288, 3, stride=2))
        self.branch2 = nn.Sequential(_conv(1088, 256, 1), _conv(256, 288, 3, padding=1), _conv(288, 320, 3, stride=2))
        self.branch3 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)  # N x 2080


class Block8(nn.Module):
    """Inception-ResNet-C (Figure 19); the last one has no ReLU after the addition."""

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


class InceptionResNetV2(_Net):
    """Inception-ResNet-v2: v3's stem, 10 x Block35 (scale 0.17), Reduction-A, 20 x Block17 (0.10), Reduction-B,
    10 x Block8 (0.20), a 1x1 conv to 1536 and the classifier (dropout 0.2, the paper's keep 0.8)."""

    name = "inception_resnet_v2"
    classifier = "last_linear"

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, stem: str = "imagenet",
                 dropout: float = 0.2) -> None:
        super().__init__()
        check_stem(stem)
        self.in_channels, self.stem = in_channels, stem
        self.min_size = {"imagenet": 75, "cifar": 7}[stem]
        small = stem == "cifar"
        p = int(small)
        self.conv2d_1a = _conv(in_channels, 32, 3, stride=1 if small else 2, padding=p)
        self.conv2d_2a = _conv(32, 32, 3, padding=p)
        self.conv2d_2b = _conv(32, 64, 3, padding=1)
        self.maxpool_3a: nn.Module = nn.Identity() if small else nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = _conv(64, 80, 1)
        self.conv2d_4a = _conv(80, 192, 3, padding=p)
        self.maxpool_5a: nn.Module = nn.Identity() if small else nn.MaxPool2d(3, stride=2)
        self.mixed_5b = Mixed_5b()
        self.repeat = nn.Sequential(*[Block35(scale=0.17) for _ in range(10)])
        self.mixed_6a = Mixed_6a()
        self.repeat_1 = nn.Sequential(*[Block17(scale=0.10) for _ in range(20)])
        self.mixed_7a = Mixed_7a()
        self.repeat_2 = nn.Sequential(*[Block8(scale=0.20) for _ in range(9)])
        self.block8 = Block8(scale=1.0, no_relu=True)
        self.conv2d_7b = _conv(2080, 1536, 1)
        self.dropout = nn.Dropout(dropout)
        self.last_linear = nn.Linear(1536, num_classes)
        trunc_normal_fan_in_(self)

    def _features(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        check_input(x, self.min_size, self.in_channels, self.name)
        # N x 3 x 299 x 299 (cifar stem: N x 3 x 32 x 32, still 32 x 32 at mixed_5b)
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))  # N x 64 x 147 x 147
        x = self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x)))  # N x 192 x 71 x 71
        x = self.mixed_5b(self.maxpool_5a(x))  # N x 320 x 35 x 35
        x = self.mixed_6a(self.repeat(x))  # N x 1088 x 17 x 17
        x = self.mixed_7a(self.repeat_1(x))  # N x 2080 x 8 x 8
        x = self.conv2d_7b(self.block8(self.repeat_2(x)))  # N x 1536 x 8 x 8
        return x, []


# --------------------------------------------------------------------------------------------------------------
# Registered builders
# --------------------------------------------------------------------------------------------------------------


@register_model(family="inception", paper="Ioffe & Szegedy, Batch Normalization: Accelerating Deep Network "
                "Training by Reducing Internal Covariate Shift", year=2015, input_size=(3, 224, 224), min_size=7)
def inception_v2(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> InceptionV2:
    """BN-Inception (the appendix network of the batch-norm paper)."""
    return InceptionV2(num_classes=num_classes, in_channels=in_channels, **kwargs)


@register_model(family="inception", paper="Szegedy et al., Rethinking the Inception Architecture for Computer "
                "Vision", year=2015, input_size=(3, 299, 299), min_size=75, torchvision="inception_v3")
def inception_v3(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> Inception3:
    """Inception v3 with its auxiliary head (weight 0.4, training only); ``aux_logits=False`` drops it."""
    return Inception3(num_classes=num_classes, in_channels=in_channels, **kwargs)


@register_model(family="inception", paper="Szegedy et al., Inception-v4, Inception-ResNet and the Impact of "
                "Residual Connections on Learning", year=2016, input_size=(3, 299, 299), min_size=75)
def inception_v4(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> InceptionV4:
    return InceptionV4(num_classes=num_classes, in_channels=in_channels, **kwargs)


@register_model(family="inception", paper="Szegedy et al., Inception-v4, Inception-ResNet and the Impact of "
                "Residual Connections on Learning", year=2016, input_size=(3, 299, 299), min_size=75)
def inception_resnet_v2(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> InceptionResNetV2:
    return InceptionResNetV2(num_classes=num_classes, in_channels=in_channels, **kwargs)
