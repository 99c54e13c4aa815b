"""GoogLeNet (Inception v1).

C. Szegedy, W. Liu, Y. Jia, P. Sermanet, S. Reed, D. Anguelov, D. Erhan, V. Vanhoucke, A. Rabinovich (2014).
"Going Deeper with Convolutions". CVPR 2015, arXiv:1409.4842.

The idea: the Inception module. Instead of choosing one filter size per layer, run 1x1, 3x3 and 5x5
convolutions and a 3x3 max-pool side by side and concatenate them; 1x1 "reduction" convolutions in front
of the expensive branches keep the cost flat, so the network can be 22 layers deep at 1.5 G multiply-adds
with 12x fewer parameters than AlexNet. Two auxiliary classifiers on 4a and 4d add their losses with weight
0.3 during training (they push gradient into the middle of the net) and are dropped at inference.

This follows torchvision's port (state_dict keys, BatchNorm after every convolution, as the published
weights have), including its known quirk (pytorch/vision#906): the "5x5" branch is a 3x3 convolution.
``true_5x5=True`` builds the paper's 5x5; the default keeps torchvision's weights loadable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ZooError
from zoo.models.layers import BasicConv2d, InceptionNet, check_input_size, check_stem
from zoo.registry import register_model


def imagenet_to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised RGB -> the (x - 0.5) / 0.5 scaling Google's weights were trained with (torchvision's
    ``transform_input``, written the same way so the floating-point results are identical)."""
    x0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
    x1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
    x2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
    return torch.cat((x0, x1, x2), 1)


class Inception(nn.Module):
    """Four parallel branches: 1x1 | 1x1-3x3 | 1x1-5x5 (3x3 in torchvision) | 3x3 max-pool-1x1, concatenated."""

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        true_5x5: bool = False,
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        k = 5 if true_5x5 else 3  # torchvision's published weights have 3x3 here (pytorch/vision#906)
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1),
            BasicConv2d(ch5x5red, ch5x5, kernel_size=k, padding=k // 2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: 4x4 average pool - 1x1 conv (128) - fc 1024 - dropout 0.7 - fc."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # aux1: N x 512 x 14 x 14, aux2: N x 528 x 14 x 14
        x = F.adaptive_avg_pool2d(x, (4, 4))  # N x C x 4 x 4 (the paper: 5x5 average pool, stride 3)
        x = torch.flatten(self.conv(x), 1)  # N x 2048
        x = self.dropout(F.relu(self.fc1(x), inplace=True))  # N x 1024
        return self.fc2(x)  # N x num_classes


class GoogLeNet(InceptionNet):
    """GoogLeNet with torchvision's keys; in training mode with aux heads it returns :class:`AuxLogits`.

    ``stem="cifar"`` makes ``conv1`` a 3x3 stride-1 convolution and drops the two stem max-pools, so a 32x32
    image reaches inception3a at 32x32 (as kuangliu's CIFAR GoogLeNet does), with the same key names.
    """

    name = "googlenet"

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        aux_logits: bool = True,
        transform_input: bool = False,
        true_5x5: bool = False,
        stem: str = "imagenet",
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
        aux_weight: float = 0.3,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        check_stem(stem)
        if transform_input and in_channels != 3:
            raise ZooError(f"transform_input re-normalises RGB input; it needs in_channels=3, got {in_channels}")
        self.stem = stem
        self.in_channels = in_channels
        self.aux_logits = aux_logits
        self.aux_weight = aux_weight
        self.transform_input = transform_input

        if stem == "imagenet":
            self.conv1 = BasicConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)
            self.maxpool1: nn.Module = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        else:
            self.conv1 = BasicConv2d(in_channels, 64, kernel_size=3, stride=1, padding=1)
            self.maxpool1 = nn.Identity()
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2: nn.Module = nn.MaxPool2d(3, stride=2, ceil_mode=True) if stem == "imagenet" else nn.Identity()

        t5 = true_5x5
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32, t5)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64, t5)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64, t5)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64, t5)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64, t5)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64, t5)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128, t5)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128, t5)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128, t5)

        self.aux1: InceptionAux | None = InceptionAux(512, num_classes, dropout_aux) if aux_logits else None
        self.aux2: InceptionAux | None = InceptionAux(528, num_classes, dropout_aux) if aux_logits else None

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)
        if init_weights:
            self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's GoogLeNet init: truncated normal, std 0.01, cut at +-2 (absolute), BN to identity.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _transform_input(self, x: torch.Tensor) -> torch.Tensor:
        return imagenet_to_unit_range(x) if self.transform_input else x

    def _features(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = check_input_size(x, self.min_size, "googlenet", self.in_channels)
        aux: list[torch.Tensor] = []
        x = self._transform_input(x)
        # N x 3 x 224 x 224 (cifar stem: N x 3 x 32 x 32, every map up to maxpool3 stays 32 x 32)
        x = self.maxpool1(self.conv1(x))  # N x 64 x 56 x 56
        x = self.conv3(self.conv2(x))  # N x 192 x 56 x 56
        x = self.maxpool2(x)  # N x 192 x 28 x 28
        x = self.inception3a(x)  # N x 256 x 28 x 28
        x = self.inception3b(x)  # N x 480 x 28 x 28
        x = self.maxpool3(x)  # N x 480 x 14 x 14
        x = self.inception4a(x)  # N x 512 x 14 x 14
        if with_aux and self.aux1 is not None:
            aux.append(self.aux1(x))
        x = self.inception4b(x)  # N x 512 x 14 x 14
        x = self.inception4c(x)  # N x 512 x 14 x 14
        x = self.inception4d(x)  # N x 528 x 14 x 14
        if with_aux and self.aux2 is not None:
            aux.append(self.aux2(x))
        x = self.inception4e(x)  # N x 832 x 14 x 14
        x = self.maxpool4(x)  # N x 832 x 7 x 7
        x = self.inception5a(x)  # N x 832 x 7 x 7
        x = self.inception5b(x)  # N x 1024 x 7 x 7
        return x, aux[::-1]  # (aux2, aux1): torchvision's GoogLeNetOutputs order

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 1024
        x = self.dropout(x)
        return x if pre_logits else self.fc(x)  # N x num_classes

    def reset_classifier(self, num_classes: int) -> None:
        """New main and auxiliary classifiers for ``num_classes`` (the aux heads must agree during training)."""
        self.fc = nn.Linear(self.fc.in_features, num_classes)
        for head in (self.aux1, self.aux2):
            if head is not None:
                head.fc2 = nn.Linear(head.fc2.in_features, num_classes)


@register_model(family="inception", paper="Szegedy et al., Going Deeper with Convolutions", year=2014,
                input_size=(3, 224, 224),
                # 15: torchvision's documented minimum; the cifar stem only has the two ceil-mode pools
                # (3x3/2 then 2x2/2) left, which need 2 pixels.
                min_size={"imagenet": 15, "cifar": 2}, torchvision="googlenet")
def googlenet(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> GoogLeNet:
    """GoogLeNet with both auxiliary classifiers (weight 0.3 each, training only); ``aux_logits=False`` drops them."""
    return GoogLeNet(num_classes=num_classes, in_channels=in_channels, **kwargs)
