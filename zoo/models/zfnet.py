"""ZFNet.

M. D. Zeiler, R. Fergus (2013). "Visualizing and Understanding Convolutional Networks". ECCV 2014
(arXiv:1311.2901).

The idea: look at what each layer has learned (deconvnet projections of the strongest activations back to
pixel space) and fix the architecture by what you see. AlexNet's 11x11 stride-4 first layer left dead
filters and aliasing, so ZFNet's first layer is 7x7 with stride 2, and conv2 gets stride 2 to keep the
size; the rest is AlexNet on one GPU (96/256/384/384/256 filters, 4096-4096 fully connected, dropout),
62,357,608 parameters. The paper normalises contrast across feature maps after conv1 and conv2; the
AlexNet-style local response normalisation stands in for it here.

Sizes (paper Fig. 3): 224 -> conv1 110 -> pool 55 -> conv2 26 -> pool 13 -> conv3-5 13 -> pool 6.
``init="paper"`` (weights N(0, 0.01)) needs the paper's long SGD schedule to get going; ``init="kaiming"``
starts learning in a few steps. ``stem="cifar"``: conv1 3x3 stride 1, conv2 stride 1, global average pooling
before the classifier;
the keys are the same.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.models.layers import check_input_size, check_stem
from zoo.registry import register_model


class ZFNet(nn.Module):
    """AlexNet with a 7x7/2 first layer and a stride-2 conv2; ``features``/``classifier`` like torchvision's."""

    min_size: int | None = None  # from @register_model(min_size=...), set when built by name

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, hidden: int = 4096, dropout: float = 0.5,
                 lrn: bool = True, stem: str = "imagenet", init: str = "paper") -> None:
        super().__init__()
        check_stem(stem)
        self.stem = stem
        small = stem == "cifar"
        norm = (lambda: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)) if lrn else nn.Identity
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 96, 3 if small else 7, stride=1 if small else 2, padding=1),
            nn.ReLU(inplace=True),
            norm(),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(96, 256, 5, stride=1 if small else 2, padding=2 if small else 0),
            nn.ReLU(inplace=True),
            norm(),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(256, 384, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
        )
        pooled = 1 if small else 6
        self.avgpool = nn.AdaptiveAvgPool2d((pooled, pooled))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(256 * pooled * pooled, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        if init not in ("paper", "kaiming"):
            raise ZooError(f"unknown init {init!r}; valid: paper, kaiming")
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if init == "paper":  # "all weights initialized to 1e-2 and biases set to 0" (section 3)
                    nn.init.normal_(m.weight, 0.0, 0.01)
                else:  # He et al. 2015: keeps the signal's scale through the 8 layers, so training starts at once
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = check_input_size(x, self.min_size, f"ZFNet (stem={self.stem})")
        return self.features(x)  # N x 256 x 6 x 6 at 224

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 9216 (imagenet), N x 256 (cifar)
        return self.classifier(x)  # N x num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier[-1] = nn.Linear(self.classifier[-1].in_features, num_classes)


@register_model(family="zfnet", paper="Zeiler, Fergus, Visualizing and Understanding Convolutional Networks",
                year=2013, input_size=(3, 224, 224),
                # Smallest side whose last 3x3/2 pool still sees a full window (cifar: 9 -> 5 -> 5 -> 3 -> 1).
                min_size={"imagenet": 53, "cifar": 9})
def zfnet(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> ZFNet:
    return ZFNet(num_classes=num_classes, in_channels=in_channels, **kwargs)
