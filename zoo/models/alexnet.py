"""AlexNet.

A. Krizhevsky, I. Sutskever, G. E. Hinton (2012). "ImageNet Classification with Deep Convolutional Neural
Networks". NeurIPS 2012.

The idea: a deep convolutional network trained end to end on 1.2M images is far better than hand-made
features, once it is made trainable: ReLU instead of saturating tanh, dropout in the big fully connected
layers, overlapping max-pooling (3x3, stride 2), data augmentation, and two GPUs.

``alexnet`` is torchvision's single-GPU reading (64/192/384/256/256 filters, no normalisation, the
"One weird trick" layout) with torchvision's keys, so its weights load as they are. ``alexnet_2012`` is the
paper's network: 96/256/384/384/256 filters, local response normalisation after conv1 and conv2, and the
two-GPU connectivity (conv2, conv4, conv5 see only their own GPU's half: ``groups=2``), 60,965,224
parameters ("60 million"), on 227x227 crops (the paper's "224" does not fit its stride-4 11x11 conv).

``stem="cifar"``: conv1 becomes 5x5 stride 1 (the stride-4 11x11 would leave nothing of a 32x32 image),
the pooling layers stay, and global average pooling feeds the classifier; the keys are the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.models.layers import check_input_size, check_stem
from zoo.registry import register_model


class AlexNet(nn.Module):
    """conv1 - pool - conv2 - pool - conv3 - conv4 - conv5 - pool - fc6 - fc7 - fc8, torchvision's indices.

    ``features`` holds convolutions, ReLUs, optional LRN and the pools; ``classifier`` is
    dropout - fc6 - ReLU - dropout - fc7 - ReLU - fc8.
    """

    min_size: int | None = None  # from @register_model(min_size=...), set when built by name

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 192, 384, 256, 256),
        conv1: tuple[int, int, int] = (11, 4, 2),
        lrn: bool = False,
        groups: int = 1,
        hidden: int = 4096,
        dropout: float = 0.5,
        stem: str = "imagenet",
        init: str = "torchvision",
    ) -> None:
        super().__init__()
        check_stem(stem)
        c1, c2, c3, c4, c5 = widths
        k, s, p = conv1 if stem == "imagenet" else (5, 1, 2)
        self.stem = stem
        layers: list[nn.Module] = [nn.Conv2d(in_channels, c1, k, stride=s, padding=p), nn.ReLU(inplace=True)]
        if lrn:  # the paper's k=2, n=5, alpha=1e-4, beta=0.75; PyTorch divides alpha by n, so pass n * alpha
            layers.append(nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0))
        layers += [nn.MaxPool2d(3, stride=2), nn.Conv2d(c1, c2, 5, padding=2, groups=groups), nn.ReLU(inplace=True)]
        if lrn:
            layers.append(nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0))
        layers += [
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(c2, c3, 3, padding=1),  # conv3 sees both GPUs' maps
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 3, padding=1, groups=groups),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, 3, padding=1, groups=groups),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
        ]
        self.features = nn.Sequential(*layers)
        pooled = 6 if stem == "imagenet" else 1
        self.avgpool = nn.AdaptiveAvgPool2d((pooled, pooled))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(c5 * pooled * pooled, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        if init == "paper":
            self._init_paper()
        elif init == "kaiming":  # He et al. 2015: trains from the first steps, whatever the widths
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                    nn.init.zeros_(m.bias)
        elif init != "torchvision":  # torchvision: PyTorch's default layer init
            raise ZooError(f"unknown init {init!r}; valid: torchvision, paper, kaiming")

    def _init_paper(self) -> None:
        """Weights N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden fc layers (so ReLUs start
        with positive inputs), 0 elsewhere."""
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        fcs = [m for m in self.classifier if isinstance(m, nn.Linear)]
        ones = {id(m) for m in (convs[1], convs[3], convs[4], fcs[0], fcs[1])}
        for m in convs + fcs:
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.constant_(m.bias, 1.0 if id(m) in ones else 0.0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = check_input_size(x, self.min_size, f"AlexNet (stem={self.stem})")
        return self.features(x)  # N x 256 x 6 x 6 at 224 (imagenet stem); N x 256 x 3 x 3 at 32 (cifar)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 9216 (imagenet), N x 256 (cifar)
        return self.classifier(x)  # N x num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier[-1] = nn.Linear(self.classifier[-1].in_features, num_classes)


def _min_size(kernel: int, stride: int, padding: int) -> int:
    """Smallest side for which conv1 and the three 3x3/2 pools each still see a full window."""
    need = 3  # before the last pool
    for _ in range(2):  # back through the pools before it (convs 2-5 keep the size)
        need = 2 * (need - 1) + 3
    return (need - 1) * stride + kernel - 2 * padding


_PAPER = "Krizhevsky, Sutskever, Hinton, ImageNet Classification with Deep Convolutional Neural Networks"


@register_model(family="alexnet", paper=_PAPER, year=2012, input_size=(3, 224, 224),
                min_size={"imagenet": _min_size(11, 4, 2), "cifar": _min_size(5, 1, 2)},
                torchvision="alexnet")
def alexnet(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> AlexNet:
    return AlexNet(num_classes=num_classes, in_channels=in_channels, **kwargs)


@register_model(family="alexnet", paper=_PAPER, year=2012, input_size=(3, 227, 227),
                min_size={"imagenet": _min_size(11, 4, 0), "cifar": _min_size(5, 1, 2)})
def alexnet_2012(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> AlexNet:
    kwargs = {"widths": (96, 256, 384, 384, 256), "conv1": (11, 4, 0), "lrn": True, "groups": 2, "init": "paper",
              **kwargs}
    return AlexNet(num_classes=num_classes, in_channels=in_channels, **kwargs)
