"""Network in Network.

M. Lin, Q. Chen, S. Yan (2013). "Network In Network". ICLR 2014 (arXiv:1312.4400).

The idea: replace the linear filter of a convolution by a small multilayer perceptron slid over the image
("mlpconv": a convolution followed by 1x1 convolutions, each with a ReLU), and replace the fully connected
classifier by global average pooling of one map per class, which has no parameters to overfit and makes
each last-layer map a confidence map of its class.

``stem="imagenet"`` is the authors' ImageNet model (the Caffe model zoo's NiN: four mlpconv blocks,
96-256-384-1024 filters, 11x11/4 first layer, 7,595,176 parameters at 1000 classes). ``stem="cifar"`` is
the paper's CIFAR-10 network (three mlpconv blocks 192-160-96, 192-192-192, 192-192-classes with 5x5, 5x5
and 3x3 first convolutions, dropout between blocks, 966,986 parameters at 10 classes). The keys are the
same (``features.conv1``, ``features.cccp1``, ...; "cccp" is the cascaded cross-channel parametric pooling
of the paper, i.e. the 1x1 convolutions).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from zoo.models.layers import check_input_size, check_stem
from zoo.registry import register_model

# (first conv: out, kernel, stride, padding), 1x1 widths, pooling after the block ("max", "avg" or None)
_IMAGENET = [
    ((96, 11, 4, 0), (96, 96), "max"),
    ((256, 5, 1, 2), (256, 256), "max"),
    ((384, 3, 1, 1), (384, 384), "max"),
    ((1024, 3, 1, 1), (1024, None), None),  # None: the last 1x1 conv has one map per class
]
_CIFAR = [
    ((192, 5, 1, 2), (160, 96), "max"),
    ((192, 5, 1, 2), (192, 192), "avg"),
    ((192, 3, 1, 1), (192, None), None),
]


class NiN(nn.Module):
    """mlpconv blocks (conv - ReLU - 1x1 conv - ReLU - 1x1 conv - ReLU), pooling and dropout between them,
    global average pooling of the class maps."""

    min_size: int | None = None  # from @register_model(min_size=...), set when built by name

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5,
                 stem: str = "imagenet") -> None:
        super().__init__()
        check_stem(stem)
        self.stem = stem
        blocks = _IMAGENET if stem == "imagenet" else _CIFAR
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c_in, cccp = in_channels, 0
        for i, ((c, k, s, p), widths, pool) in enumerate(blocks, start=1):
            layers[f"conv{i}"] = nn.Conv2d(c_in, c, k, stride=s, padding=p)
            layers[f"relu{i}"] = nn.ReLU(inplace=True)
            c_in = c
            for w in widths:
                cccp += 1
                c_out = num_classes if w is None else w
                layers[f"cccp{cccp}"] = nn.Conv2d(c_in, c_out, 1)
                layers[f"relu_cccp{cccp}"] = nn.ReLU(inplace=True)
                c_in = c_out
            if pool is not None:
                # Caffe pools with ceil mode: 3x3 stride 2 windows that overlap
                pool_cls = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
                layers[f"pool{i}"] = pool_cls(3, stride=2, ceil_mode=True)
                if stem == "cifar" or i == len(blocks) - 1:
                    layers[f"drop{i}"] = nn.Dropout(dropout)
        self.features = nn.Sequential(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():  # the paper gives no init; He's keeps nine stacked ReLU layers trainable
            if isinstance(m, nn.Conv2d):
                _init_conv(m)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = check_input_size(x, self.min_size, f"NiN (stem={self.stem})")
        return self.features(x)  # N x num_classes x 6 x 6 at 224 (imagenet); N x num_classes x 8 x 8 at 32 (cifar)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(x), 1)  # N x num_classes: one averaged map per class, no FC layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """The classifier is the last 1x1 convolution (one map per class)."""
        names = [n for n in self.features._modules if n.startswith("cccp")]
        last = self.features._modules[names[-1]]
        new = nn.Conv2d(last.in_channels, num_classes, 1)
        _init_conv(new)
        self.features._modules[names[-1]] = new


def _init_conv(m: nn.Conv2d) -> None:
    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
    nn.init.zeros_(m.bias)


@register_model(family="nin", paper="Lin, Chen, Yan, Network In Network", year=2013, input_size=(3, 224, 224),
                min_size={"imagenet": 39, "cifar": 4})  # the smallest sides that leave a 1x1 map
def nin(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> NiN:
    return NiN(num_classes=num_classes, in_channels=in_channels, **kwargs)
