"""Building blocks shared by several families."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class AuxLogits(NamedTuple):
    """What a network with auxiliary classifiers returns in training mode (GoogLeNet, Inception v3).

    ``logits`` are the main head's; ``aux`` the auxiliary heads' logits, and ``weights`` the weight of
    each auxiliary loss in the total (0.3 each for GoogLeNet, as in the paper). In eval mode the
    network returns the main logits alone, like torchvision.
    """

    logits: torch.Tensor
    aux: tuple[torch.Tensor, ...]
    weights: tuple[float, ...]


class BasicConv2d(nn.Module):
    """Conv (no bias) - BatchNorm (eps 1e-3) - ReLU: the unit of every Inception network.

    Keys ``conv``/``bn`` and eps=0.001 are torchvision's (GoogLeNet, Inception v3), so their weights load as-is.
    """

    def __init__(self, in_channels: int, out_channels: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def check_input_size(x: torch.Tensor, min_size: int, model: str) -> None:
    """Raise a ZooError naming ``min_size`` for an input too small for ``model``, before any convolution.

    Without it, a too-small image fails deep inside as a shape mismatch that says nothing about the cause.
    """
    from zoo.errors import ZooError

    h, w = x.shape[-2:]
    if h < min_size or w < min_size:
        raise ZooError(f"{model} needs inputs of at least {min_size}x{min_size} pixels; got {h}x{w}")


ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid")


def make_activation(name: str) -> nn.Module:
    """The activation module for a config's ``activation`` name (``relu``, ``leaky_relu``, ``elu``, ``gelu``,
    ``tanh``, ``sigmoid``); parameter-free, so the choice never changes a state_dict."""
    from zoo.errors import ZooError

    table = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "gelu": nn.GELU, "tanh": nn.Tanh,
             "sigmoid": nn.Sigmoid}
    if name not in table:
        raise ZooError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return table[name]()


class Maxout(nn.Module):
    """Maxout (I. J. Goodfellow, D. Warde-Farley, M. Mirza, A. Courville, Y. Bengio 2013, "Maxout Networks"):
    the maximum of ``pieces`` affine maps. The layer before it computes ``pieces`` times the width, and this
    takes the max over each unit's consecutive group of ``pieces`` channels, a learnt convex piecewise-linear
    activation (ReLU is the max of ``x`` and a fixed 0). Parameter-free itself.
    """

    def __init__(self, pieces: int = 2) -> None:
        super().__init__()
        from zoo.errors import ZooError

        if int(pieces) < 2:
            raise ZooError(f"model.maxout_pieces must be at least 2; got {pieces}")
        self.pieces = int(pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(1, (-1, self.pieces)).amax(2)  # N x (C*k) x ... -> N x C x ...

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


def activation_width(activation: str, pieces: int) -> int:
    """How many outputs the layer before ``activation`` computes per unit: ``pieces`` for maxout, else 1."""
    return int(pieces) if activation == "maxout" else 1


def make_unit_activation(activation: str, pieces: int = 2) -> nn.Module:
    """:func:`make_activation`, or :class:`Maxout` for ``activation="maxout"`` (see :func:`activation_width`)."""
    return Maxout(pieces) if activation == "maxout" else make_activation(activation)


class GaussianDropout(nn.Module):
    """Gaussian dropout (N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov 2014,
    "Dropout", section 10): multiply each unit by noise drawn from N(1, p / (1 - p)) instead of Bernoulli(1 - p)
    / (1 - p). Both have mean 1 and that variance, so the expected activation is unchanged and eval is the
    identity. No parameters: swapping it for ``nn.Dropout(p)`` leaves a state_dict as it was.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            from zoo.errors import ZooError

            raise ZooError(f"gaussian dropout needs 0 <= p < 1; got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        std = (self.p / (1.0 - self.p)) ** 0.5
        return x * (1.0 + std * torch.randn_like(x))

    def extra_repr(self) -> str:
        return f"p={self.p}"


DROPOUT_KINDS = ("standard", "gaussian")


def use_gaussian_dropout(net: nn.Module) -> int:
    """Replace every ``nn.Dropout`` module of ``net`` by :class:`GaussianDropout` of the same ``p``, in place;
    return how many were replaced. Dropout applied functionally or inside ``nn.LSTM`` is not a module, and stays."""
    swaps = [(parent, name, child) for parent in net.modules() for name, child in parent.named_children()
             if type(child) is nn.Dropout]
    for parent, name, child in swaps:
        setattr(parent, name, GaussianDropout(child.p))
    return len(swaps)
