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
