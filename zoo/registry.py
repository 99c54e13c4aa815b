"""The model registry: every network in the zoo is built by name.

A model file decorates a builder function with ``@register_model(...)``; the decorator records
the paper, the default input size and the torchvision counterpart, so ``zoo.model_info`` can
answer questions about a network without the caller knowing which file it lives in.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from zoo.errors import ZooError


class UnknownModelError(ZooError, KeyError):
    """Raised for a model name that is not registered; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0] if self.args else ""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    family: str
    paper: str
    year: int
    input_size: tuple[int, ...]  # (C, H, W) for images, (T, features) for sequences
    min_size: int | None  # smallest H = W the default (ImageNet) stem accepts
    torchvision: str | None  # name of the torchvision builder with the same state_dict keys
    kind: str  # "image" or "sequence"
    defaults: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}

# Keys of a model config that configure training, not the architecture (see configs/model/_base.yaml).
RESERVED_MODEL_KEYS = frozenset({"name", "pretrained", "freeze", "compile"})


def register_model(
    name: str | None = None,
    *,
    family: str,
    paper: str,
    year: int,
    input_size: tuple[int, ...] = (3, 224, 224),
    min_size: int | None = None,
    torchvision: str | None = None,
    kind: str = "image",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder ``fn(num_classes=..., in_channels=..., **kwargs) -> nn.Module``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is registered twice")
        _REGISTRY[key] = ModelEntry(key, fn, family, paper, year, tuple(input_size), min_size, torchvision, kind)
        return fn

    return wrap


def _entry(name: str) -> ModelEntry:
    _import_models()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=5, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"valid: {', '.join(sorted(_REGISTRY))}"
        raise UnknownModelError(f"unknown model {name!r}; {hint}")
    return _REGISTRY[name]


def create_model(
    name: str, num_classes: int = 1000, in_channels: int = 3, *, dropout_kind: str = "standard",
    weight_norm: bool = False, **kwargs: Any
) -> nn.Module:
    """Build a registered network: ``create_model("resnet18", num_classes=10, in_channels=1)``.

    Two choices apply to any built network, so they live here rather than in every model file:
    ``dropout_kind="gaussian"`` swaps each ``nn.Dropout`` for multiplicative Gaussian noise of the same
    ``p`` (state_dict unchanged), ``weight_norm=True`` reparametrises every conv and linear weight.
    """
    from zoo.models.layers import DROPOUT_KINDS, use_gaussian_dropout
    from zoo.models.norms import apply_weight_norm

    if dropout_kind not in DROPOUT_KINDS:
        raise ZooError(f"unknown model.dropout_kind {dropout_kind!r}; valid: {', '.join(DROPOUT_KINDS)}")
    net = _entry(name).builder(num_classes=num_classes, in_channels=in_channels, **kwargs)
    if dropout_kind == "gaussian":
        use_gaussian_dropout(net)
    if weight_norm:
        apply_weight_norm(net)
    return net


SMALL_IMAGE = 64  # below this side length, `stem: auto` picks a model's small-input ("cifar") stem


def build_network(
    model: dict[str, Any], num_classes: int, in_channels: int, image_size: int | None = None
) -> nn.Module:
    """``create_model`` from a model config: ``name`` plus architecture kwargs (training keys dropped).

    ``stem: auto`` (the model configs' default) becomes ``"cifar"`` for images smaller than 64 pixels
    and ``"imagenet"`` otherwise, so ``model=resnet18 data=cifar10`` gets the 3x3 stride-1 stem.
    """
    arch = {k: v for k, v in model.items() if k not in RESERVED_MODEL_KEYS}
    if arch.get("stem") == "auto":
        arch["stem"] = "cifar" if image_size is not None and image_size < SMALL_IMAGE else "imagenet"
    return create_model(model["name"], num_classes=num_classes, in_channels=in_channels, **arch)


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, sorted; ``pattern`` is a shell glob such as ``"resnet*"``."""
    _import_models()
    names = sorted(_REGISTRY)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def model_info(name: str) -> dict[str, Any]:
    """What is known about a model: paper, year, input sizes, parameters at 1000 classes, torchvision twin."""
    e = _entry(name)
    if e.kind == "image":
        model = e.builder(num_classes=1000, in_channels=e.input_size[0])
    else:
        model = e.builder(num_classes=10, in_channels=e.input_size[-1])
    params = sum(p.numel() for p in model.parameters())
    return {
        "name": e.name,
        "family": e.family,
        "paper": e.paper,
        "year": e.year,
        "kind": e.kind,
        "input_size": e.input_size,
        "min_size": e.min_size,
        "num_params": params,
        "torchvision": e.torchvision,
    }


def entry(name: str) -> ModelEntry:
    """The registry record of ``name`` (raises :class:`UnknownModelError` with suggestions)."""
    return _entry(name)


def _import_models() -> None:
    # Importing the package runs every @register_model decorator once.
    import zoo.models  # noqa: F401
