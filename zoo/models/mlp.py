"""Multi-layer perceptron: from Rosenblatt's perceptron to the deep fully connected net.

F. Rosenblatt (1958). "The Perceptron: A Probabilistic Model for Information Storage and Organization in
the Brain". Psychological Review 65(6). D. E. Rumelhart, G. E. Hinton, R. J. Williams (1986). "Learning
representations by back-propagating errors". Nature 323.

The idea: stacked affine maps with a nonlinearity between them, trained end to end by backpropagation.
``depth=0`` is a single linear layer (the perceptron / multinomial logistic regression); each hidden layer
is ``Linear -> [norm] -> activation -> [Dropout]``. Which activation and how deep decide whether the
gradient reaches the first layers at all: with ``sigmoid`` (derivative at most 1/4) a deep stack shows the
vanishing gradient in the per-layer gradient norms of TensorBoard, ReLU and batch norm cure it.

``norm`` is any of zoo.models.norms (``batch_norm=true`` is ``norm=batch``); ``order`` permutes the three
steps after the Linear (``[act,norm,dropout]`` is batch norm after the ReLU, ``[dropout,norm,act]``
dropout before it), which the README's measured answers compare; ``activation=maxout`` makes each Linear compute
``maxout_pieces`` times the width and keeps the maximum of each unit's pieces (Goodfellow et al. 2013).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.models.layers import activation_width, make_unit_activation
from zoo.models.norms import make_norm
from zoo.registry import register_model


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` units on the flattened input, then a linear classifier ``fc``."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int = 28,
        depth: int = 2,
        width: int = 256,
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
        norm: str | None = None,
        norm_groups: int = 32,
        order: Sequence[str] = ("norm", "act", "dropout"),
        maxout_pieces: int = 2,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.in_features = in_channels * input_size * input_size
        norm = _norm_kind(norm, batch_norm)
        steps = [order] if isinstance(order, str) else [str(s) for s in order]
        if sorted(steps) != ["act", "dropout", "norm"]:
            raise ZooError(f"model.order must name act, norm and dropout once each, e.g. [norm,act,dropout]; "
                           f"got {order}")
        pieces = activation_width(activation, maxout_pieces)
        # a shift right after the Linear makes its bias redundant (as in the default norm,act,dropout order)
        bias = norm == "none" or steps[0] != "norm"
        layers: list[nn.Module] = []
        features = self.in_features
        for _ in range(depth):
            block: list[nn.Module] = [nn.Linear(features, width * pieces, bias=bias)]
            units = width * pieces  # maxout narrows to width
            for step in steps:
                if step == "act":
                    block.append(make_unit_activation(activation, maxout_pieces))
                    units = width
                elif step == "norm" and norm != "none":
                    block.append(make_norm(norm, units, norm_groups, dim=1))
                elif step == "dropout" and dropout > 0:
                    block.append(nn.Dropout(dropout))
            layers.append(nn.Sequential(*block))
            features = width
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)  # N x (C*H*W)
        if x.shape[1] != self.in_features:
            side = math.isqrt(x.shape[1] // self.in_channels)
            raise ZooError(f"mlp was built for {self.in_features} input values; got {x.shape[1]} "
                           f"(set model.input_size={side}, the side of the square input)")
        return self.features(x)  # N x width

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)  # N x num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.fc.in_features, num_classes)


def _norm_kind(norm: str | None, batch_norm: bool) -> str:
    """``norm`` if given, else the older ``batch_norm`` flag's meaning; both at once must agree."""
    if norm is None:
        return "batch" if batch_norm else "none"
    if batch_norm and norm != "batch":
        raise ZooError(f"model.batch_norm=true and model.norm={norm} disagree; set one of them")
    return norm


@register_model(family="mlp", paper="Rumelhart, Hinton & Williams, Learning representations by back-propagating "
                "errors", year=1986, input_size=(1, 28, 28))
def mlp(num_classes: int = 10, in_channels: int = 1, **kwargs) -> MLP:
    return MLP(num_classes=num_classes, in_channels=in_channels, **kwargs)
