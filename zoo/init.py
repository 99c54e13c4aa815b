"""Weight initialisation schemes, applied to a built network by name (``init=`` on the command line).

``default`` keeps what each model does itself (torchvision's choices, usually Kaiming). The others set every
weight matrix and convolution kernel (any parameter named ``weight*`` with two or more dimensions, so RNN
``weight_ih``/``weight_hh`` too), zero every bias, and set normalisation layers to the identity (scale 1,
shift 0):

- ``xavier_uniform`` / ``xavier_normal`` — Glorot & Bengio 2010: Var(w) = gain^2 * 2 / (fan_in + fan_out),
  which keeps activation and gradient variance equal across tanh/sigmoid layers.
- ``kaiming_uniform`` / ``kaiming_normal`` — He et al. 2015: Var(w) = gain^2 / fan (``mode`` fan_in keeps the
  forward variance, fan_out the backward one), gain sqrt(2) for ReLU.
- ``orthogonal`` — Saxe et al. 2014: rows (or columns) orthonormal, norms preserved exactly in a linear net.
- ``trunc_normal`` — N(0, std^2) cut at +-2 std (ViT/timm's choice).
- ``normal`` — N(0, std^2) whatever the layer's fans (std 1: the naive choice the study notes warn about).
- ``zeros`` — every weight 0: all units of a layer compute the same and get the same gradient, so they stay
  equal (the symmetry a random init breaks); kept to show it.

``zero_init_residual`` (Goyal et al. 2017, "Accurate, Large Minibatch SGD") starts every residual branch at
zero (the scale of its last BatchNorm; in a pre-activation block, its last convolution), so each block starts
as the identity. ``ResNet(zero_init_residual=True)`` applies the same rule, :func:`zero_init_last`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from zoo.errors import ZooError

SCHEMES = (
    "default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal", "trunc_normal",
    "normal", "zeros",
)
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def _init_weight(w: torch.Tensor, scheme: str, cfg: dict[str, Any]) -> None:
    nonlinearity = cfg.get("nonlinearity", "relu")
    a = float(cfg.get("a", 0.0))
    if scheme.startswith("xavier"):
        slope = a if nonlinearity == "leaky_relu" else None
        gain = float(cfg.get("gain") or nn.init.calculate_gain(nonlinearity, slope))
        (nn.init.xavier_uniform_ if scheme == "xavier_uniform" else nn.init.xavier_normal_)(w, gain=gain)
    elif scheme.startswith("kaiming"):
        mode = cfg.get("mode", "fan_in")
        if mode not in ("fan_in", "fan_out"):
            raise ZooError(f"init.mode must be fan_in or fan_out; got {mode!r}")
        fn = nn.init.kaiming_uniform_ if scheme == "kaiming_uniform" else nn.init.kaiming_normal_
        fn(w, a=a, mode=mode, nonlinearity=nonlinearity)
    elif scheme == "orthogonal":
        nn.init.orthogonal_(w, gain=float(cfg.get("gain") or 1.0))
    elif scheme == "normal":
        nn.init.normal_(w, 0.0, float(cfg.get("std", 1.0)))
    elif scheme == "zeros":
        nn.init.zeros_(w)
    elif scheme == "trunc_normal":
        std = float(cfg.get("std", 0.02))
        nn.init.trunc_normal_(w, mean=0.0, std=std, a=-2 * std, b=2 * std)


def _init_parametrized_weight(m: nn.Module, scheme: str, cfg: dict[str, Any]) -> None:
    """A weight computed by a parametrisation (``model.weight_norm=true``: ``w = g v / ||v||`` from
    ``parametrizations.weight.original0/1``) is not a parameter of its layer: the scheme draws the weight itself
    and assigning it runs the parametrisation's inverse, which stores that weight's ``g`` and ``v``."""
    if scheme == "zeros":
        raise ZooError("init=zeros with model.weight_norm=true: a zero weight has no direction (v / ||v|| is 0/0)")
    w = torch.empty_like(m.weight)
    _init_weight(w, scheme, cfg)
    with torch.no_grad():
        m.weight = w


def zero_init_last(block: nn.Module) -> bool:
    """The one zero-init-residual rule: make a residual branch start at zero, so the block is the identity.

    The branch is the block's children other than ``downsample``. If a normalisation follows its last
    convolution (post-activation blocks: ResNet's ``bn2``/``bn3``), that norm's scale becomes zero, as in
    torchvision; otherwise (pre-activation blocks end in a convolution) the last convolution's weight does, as
    timm's ``PreActBottleneck.zero_init_last``. Returns whether anything was zeroed.
    """
    children = [c for name, c in block.named_children() if name != "downsample"]
    last_norm = max((i for i, c in enumerate(children) if isinstance(c, _NORMS) and getattr(c, "weight", None)
                     is not None), default=-1)
    last_conv = max((i for i, c in enumerate(children) if isinstance(c, nn.modules.conv._ConvNd)), default=-1)
    if last_conv < 0:
        return False
    target = children[last_norm] if last_norm > last_conv else children[last_conv]
    with torch.no_grad():
        if parametrize.is_parametrized(target, "weight"):  # weight norm, w = g v / ||v||: g = 0 makes w = 0
            nn.init.zeros_(target.parametrizations.weight.original0)
        else:
            nn.init.zeros_(target.weight)
    return True


def zero_init_residual(net: nn.Module) -> int:
    """Start every residual branch of ``net`` at zero (:func:`zero_init_last`); return how many blocks.

    A residual block is a module with a ``downsample`` attribute (torchvision's convention) or a
    ``zero_init_last()`` method (timm's, which then decides itself).
    """
    n = 0
    for m in net.modules():
        if hasattr(m, "zero_init_last") and callable(m.zero_init_last):
            m.zero_init_last()
            n += 1
        elif hasattr(m, "downsample") and zero_init_last(m):
            n += 1
    return n


@torch.no_grad()
def init_weights(net: nn.Module, cfg: dict[str, Any] | str | None) -> nn.Module:
    """Apply an ``init`` config (``scheme`` + options, or just a scheme name) to ``net`` in place."""
    if cfg is None:
        return net
    cfg = {"scheme": cfg} if isinstance(cfg, str) else dict(cfg)
    scheme = cfg.get("scheme", "default")
    if scheme not in SCHEMES:
        raise ZooError(f"unknown init scheme {scheme!r}; valid: {', '.join(SCHEMES)}")
    if scheme != "default":
        for m in net.modules():
            if isinstance(m, _NORMS):
                if getattr(m, "weight", None) is not None:
                    nn.init.ones_(m.weight)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
                continue
            for name, p in m.named_parameters(recurse=False):
                if name.startswith("weight") and p.ndim >= 2:
                    _init_weight(p, scheme, cfg)
                elif name.startswith("bias"):
                    nn.init.zeros_(p)
            if parametrize.is_parametrized(m, "weight") and m.weight.ndim >= 2:
                _init_parametrized_weight(m, scheme, cfg)
    if cfg.get("zero_init_residual"):
        if zero_init_residual(net) == 0:
            raise ZooError(f"init.zero_init_residual: {type(net).__name__} has no residual block")
    return net


def expected_std(scheme: str, fan_in: int, fan_out: int, gain: float = 1.0, mode: str = "fan_in") -> float:
    """The standard deviation a scheme gives a weight with these fans (for tests and the README)."""
    if scheme.startswith("xavier"):
        return gain * math.sqrt(2.0 / (fan_in + fan_out))
    if scheme.startswith("kaiming"):
        return gain / math.sqrt(fan_in if mode == "fan_in" else fan_out)
    raise ZooError(f"no closed-form std for {scheme!r}")
