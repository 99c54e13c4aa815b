"""Building blocks shared by several families, and the one input-size check and the one stem check."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import handle_torch_function, has_torch_function

from zoo.errors import ZooError


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


def inception_conv(cin: int, cout: int, k: int | tuple[int, int], stride: int = 1,
          padding: int | tuple[int, int] = 0) -> BasicConv2d:
    """The Inception networks' conv-BN-ReLU unit with positional kernel, stride and padding."""
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


class InceptionNet(nn.Module):
    """The Inception networks' shared interface: ``forward_features`` (last map), ``forward_head`` (pool,
    dropout, fc), training-mode :class:`AuxLogits` where the network has an auxiliary head."""

    name: str
    classifier: str = "fc"
    min_size: int | None = None  # from @register_model(min_size=...), set when built by name

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


def inception_avg_pool() -> nn.AvgPool2d:
    """The 3x3 stride-1 average pool of the Inception-v4 / Inception-ResNet branches (padding not counted)."""
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


STEMS = ("imagenet", "cifar")


def check_stem(stem: str, valid: tuple[str, ...] = STEMS) -> str:
    """The one check of a ``stem`` argument: an unknown name ends in one line listing the valid ones."""
    if stem not in valid:
        raise ZooError(f"unknown stem {stem!r}; valid: {', '.join(valid)}")
    return stem


def check_input_size(x: torch.Tensor, min_size: int | None, model: str,
                     in_channels: int | None = None) -> torch.Tensor:
    """Raise a ZooError naming ``min_size`` for an input too small for ``model``, before any convolution.

    Without it, a too-small image fails deep inside as a shape mismatch that says nothing about the cause.
    ``min_size`` is the registry's declaration (``@register_model(min_size=...)``, set on the network when it
    is built by name); None checks nothing. ``in_channels`` also checks the channel count.

    Returns ``x``: ``x = check_input_size(x, ...)``. Under ``torch.fx`` tracing ``x`` is a Proxy whose sizes
    are not known: the call is recorded as one node (the ``__torch_function__`` protocol, as ``torch._assert``
    does), and because the forward goes on from its result, pruning a traced graph (``create_feature_extractor``)
    keeps the check.
    """
    if has_torch_function((x,)):
        return handle_torch_function(check_input_size, (x,), x, min_size, model, in_channels)
    if in_channels is not None and (x.ndim != 4 or x.shape[1] != in_channels):
        raise ZooError(f"{model} expects N x {in_channels} x H x W input; got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if min_size is not None and (h < min_size or w < min_size):
        raise ZooError(f"{model} needs inputs of at least {min_size}x{min_size} pixels; got {h}x{w}")
    return x


def pad_to_square(x: torch.Tensor, size: int, model: str, padded: tuple[int, ...] = ()) -> torch.Tensor:
    """``x`` as a ``size`` x ``size`` input: as it is at that size, centred with zero padding from a side in
    ``padded`` (LeNet-5: MNIST's 28x28 digits in the paper's 32x32 field), else one line naming both.

    Traceable like :func:`check_input_size`: under ``torch.fx`` it is one recorded call, not a branch.
    """
    if has_torch_function((x,)):
        return handle_torch_function(pad_to_square, (x,), x, size, model, padded)
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    if h == w and h in padded:
        p = (size - h) // 2
        return F.pad(x, (p, p, p, p))
    sides = " or ".join(f"{s}x{s}" for s in padded)
    raise ZooError(f"{model} takes {size}x{size} input ({sides} is padded to {size}x{size}); got {h}x{w}")


ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid")


def make_activation(name: str) -> nn.Module:
    """The activation module for a config's ``activation`` name (``relu``, ``leaky_relu``, ``elu``, ``gelu``,
    ``tanh``, ``sigmoid``); parameter-free, so the choice never changes a state_dict."""

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
