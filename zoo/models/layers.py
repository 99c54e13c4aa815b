"""Building blocks shared by several families."""

from __future__ import annotations

from typing import NamedTuple

import torch


class AuxLogits(NamedTuple):
    """What a network with auxiliary classifiers returns in training mode (GoogLeNet, Inception v3).

    ``logits`` are the main head's; ``aux`` the auxiliary heads' logits, and ``weights`` the weight of
    each auxiliary loss in the total (0.3 each for GoogLeNet, as in the paper). In eval mode the
    network returns the main logits alone, like torchvision.
    """

    logits: torch.Tensor
    aux: tuple[torch.Tensor, ...]
    weights: tuple[float, ...]
