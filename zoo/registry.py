"""The model registry: every network in the zoo is built by name.

A model file decorates a builder function with ``@register_model(...)``; the decorator records
the paper, the default input size, the smallest input per stem, the state-dict converter of old
published files, the options that older weights need and the torchvision counterpart, so
``zoo.model_info``, ``zoo.load_pretrained``, a checkpoint's record and the network's own input check
answer from one declaration without knowing which file it lives in.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from zoo.errors import ZooError


class UnknownModelError(ZooError, KeyError):
    """Raised for a model name that is not registered; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0] if self.args else ""


@dataclass(frozen=True)
class ModelEntry:
    """What zoo knows about one registered network, declared once in its ``@register_model``."""

    name: str
    builder: Callable[..., nn.Module]
    family: str
    paper: str
    year: int
    input_size: tuple[int, ...]  # (C, H, W) for images, (T, features) for sequences
    min_sizes: dict[str, int]  # stem -> smallest H = W it accepts; {} for a network of any (or one fixed) size
    torchvision: str | None  # name of the torchvision builder with the same state_dict keys
    kind: str  # "image" or "sequence"
    defaults: dict[str, Any] = field(default_factory=dict)
    default_stem: str = "imagenet"  # the builder's default ``stem`` (ResNeXt-29 and the CIFAR nets: "cifar")
    # Renames old published key names to the current ones (DenseNet's ``norm.1`` -> ``norm1``, BN counters);
    # zoo.load_pretrained and fine-tuning apply it to a bare state dict before loading.
    state_dict_converter: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # Architecture options that weights show and an older record does not name: ``(options with the stem
    # resolved, weights) -> options to add`` (DenseNet: ``stem_norm=True`` for zoo's CIFAR stem before
    # 2026-12-01); :func:`options_for_weights` applies it where a checkpoint or state dict is built.
    options_from_weights: Callable[[dict[str, Any], Mapping[str, torch.Tensor]], dict[str, Any]] | None = None

    @property
    def min_size(self) -> int | None:
        """The smallest H = W the default stem accepts (None: no minimum declared)."""
        return self.min_size_for(self.default_stem)

    def min_size_for(self, stem: str | None) -> int | None:
        return self.min_sizes.get(stem or self.default_stem)


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
    min_size: int | dict[str, int] | None = None,
    torchvision: str | None = None,
    kind: str = "image",
    state_dict_converter: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    options_from_weights: Callable[[dict[str, Any], Mapping[str, torch.Tensor]], dict[str, Any]] | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder ``fn(num_classes=..., in_channels=..., **kwargs) -> nn.Module``.

    ``min_size`` is the one declaration of the smallest input side: an int, or one per stem
    (``{"imagenet": 32, "cifar": 8}``). The built network gets it as ``min_size`` for the stem it was built
    with, and its forward's :func:`zoo.models.layers.check_input_size` reads that.
    """

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is registered twice")
        stem_param = inspect.signature(fn).parameters.get("stem")
        default_stem = stem_param.default if stem_param is not None and isinstance(stem_param.default, str) \
            else "imagenet"
        sizes = {} if min_size is None else dict(min_size) if isinstance(min_size, dict) else {default_stem: min_size}

        @functools.wraps(fn)
        def build(*args: Any, **kwargs: Any) -> nn.Module:
            model = fn(*args, **kwargs)
            size = _REGISTRY[key].min_size_for(kwargs.get("stem"))
            if size is not None:
                model.min_size = size
            return model

        _REGISTRY[key] = ModelEntry(key, build, family, paper, year, tuple(input_size), sizes, torchvision, kind,
                                    default_stem=default_stem, state_dict_converter=state_dict_converter,
                                    options_from_weights=options_from_weights)
        return build

    return wrap


def _entry(name: str) -> ModelEntry:
    _import_models()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=5, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"valid: {', '.join(sorted(_REGISTRY))}"
        raise UnknownModelError(f"unknown model {name!r}; {hint}")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int = 1000, in_channels: int = 3, pretrained: bool | str | None = None,
                 features_only: bool = False, out_indices: Sequence[int] | None = None, *,
                 dropout_kind: str = "standard", weight_norm: bool = False, **kwargs: Any) -> nn.Module:
    """Build a registered network: ``create_model("resnet18", num_classes=10, in_channels=1)``.

    torchvision's and timm's conventions: ``pretrained=True`` loads the model's default published weights,
    ``pretrained="IMAGENET1K_V1"`` a tag, ``pretrained=PATH`` a file (other ``num_classes``: the classifier stays
    freshly initialised). ``num_classes=0`` leaves out the classifier (``forward`` gives pooled N x C features);
    ``features_only=True`` returns the feature maps at ``out_indices`` (see :mod:`zoo.models.features`).

    Two choices apply to any built network, so they live here rather than in every model file:
    ``dropout_kind="gaussian"`` swaps each ``nn.Dropout`` for multiplicative Gaussian noise of the same
    ``p`` (state_dict unchanged), ``weight_norm=True`` reparametrises every conv and linear weight.
    """
    from zoo.models.layers import DROPOUT_KINDS, use_gaussian_dropout
    from zoo.models.norms import apply_weight_norm

    e = _entry(name)
    if dropout_kind not in DROPOUT_KINDS:
        raise ZooError(f"unknown model.dropout_kind {dropout_kind!r}; valid: {', '.join(DROPOUT_KINDS)}")
    if pretrained in (None, False) or str(pretrained).lower() in ("false", "none", ""):
        pretrained = None
    if pretrained is not None:
        from zoo.pretrained import requested

        published = requested(name, pretrained)
        if published is not None and published.source == "torchvision" and "transform_input" not in kwargs:
            with torch.device("meta"):  # torchvision's builders turn transform_input on with Google's weights
                if hasattr(_build(e, num_classes or 1, in_channels, kwargs), "transform_input"):
                    kwargs["transform_input"] = True
    model = _build(e, num_classes or 1, in_channels, kwargs)
    head: set[str] | None = None
    if pretrained is not None:
        from zoo.training.finetune import load_pretrained_into

        head = _classifier_keys(name, in_channels, kwargs)
        load_pretrained_into(model, pretrained, name, head)
    if dropout_kind == "gaussian" and use_gaussian_dropout(model) == 0:  # else the option would do nothing
        raise ZooError(f"model.dropout_kind=gaussian: {name} has no nn.Dropout module to replace (model.dropout=0 "
                       "builds none; dropout written as a function in a forward, as in WRN's and DenseNet's blocks "
                       "or an LSTM's, stays Bernoulli)")
    if weight_norm:
        apply_weight_norm(model)
    if num_classes == 0 or features_only:
        from zoo.models.features import FeatureListNet, remove_classifier

        head = _classifier_keys(name, in_channels, kwargs) if head is None else head
        remove_classifier(model, head)
        if features_only:
            model = FeatureListNet(model, name, in_channels, out_indices, kwargs, head)
    return model


def _build(e: ModelEntry, num_classes: int, in_channels: int, kwargs: dict[str, Any]) -> nn.Module:
    """The entry's builder; an option the network does not have is one line naming it, not a TypeError."""
    try:
        return e.builder(num_classes=num_classes, in_channels=in_channels, **kwargs)
    except TypeError as err:
        bad = re.search(r"unexpected keyword argument '(\w+)'", str(err))
        if bad is None:
            raise
        raise ZooError(f"model {e.name!r} has no option {bad.group(1)!r} (configs/model/{e.name}.yaml lists "
                       "its options)") from err


def _classifier_keys(name: str, in_channels: int, kwargs: dict[str, Any]) -> set[str]:
    from zoo.training.finetune import classifier_keys

    return classifier_keys({"name": name, **kwargs}, 1000, in_channels)


SMALL_IMAGE = 64  # below this side length, `stem: auto` picks a model's small-input ("cifar") stem


def build_network(
    model: dict[str, Any], num_classes: int, in_channels: int, image_size: int | None = None
) -> nn.Module:
    """``create_model`` from a model config: ``name`` plus architecture kwargs (training keys dropped).

    ``stem: auto`` (the model configs' default) becomes ``"cifar"`` for images smaller than 64 pixels
    and ``"imagenet"`` otherwise, so ``model=resnet18 data=cifar10`` gets the 3x3 stride-1 stem.
    """
    return create_model(model["name"], num_classes=num_classes, in_channels=in_channels,
                        **_architecture(model, image_size))


def _architecture(model: dict[str, Any], image_size: int | None) -> dict[str, Any]:
    """A model config's architecture kwargs (training keys dropped), ``stem: auto`` resolved for ``image_size``."""
    arch = {k: v for k, v in model.items() if k not in RESERVED_MODEL_KEYS}
    if arch.get("stem") == "auto":
        arch["stem"] = "cifar" if image_size is not None and image_size < SMALL_IMAGE else "imagenet"
    return arch


def options_for_weights(model: dict[str, Any], weights: Mapping[str, torch.Tensor],
                        image_size: int | None = None) -> dict[str, Any]:
    """``model`` (a model config: ``name`` + kwargs) with the options ``weights`` need and it leaves unset.

    A network whose architecture gained an option keeps loading the files written before it: its entry's
    ``options_from_weights`` reads them off the key names (a ``features.norm0`` in a CIFAR-stem DenseNet:
    ``stem_norm=True``). Only options the config does not set (or sets to null) are added, and they are
    values from the model's own code, so a file still chooses nothing but what its keys show.
    """
    e = _entry(model["name"])
    if e.options_from_weights is None:
        return model
    arch = {"stem": e.default_stem, **_architecture(model, image_size)}
    added = {k: v for k, v in e.options_from_weights(arch, weights).items() if model.get(k) is None}
    return {**model, **added}


def list_models(pattern: str | None = None, pretrained: bool = False) -> list[str]:
    """Registered names, sorted; ``pattern`` is a shell glob such as ``"resnet*"``; ``pretrained=True``: only
    the models with published weights (``model_info(name)["weights"]`` lists them)."""
    _import_models()
    names = sorted(_REGISTRY)
    names = [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names
    if pretrained:
        from zoo.pretrained import available

        names = [n for n in names if available(n)]
    return names


def model_info(name: str) -> dict[str, Any]:
    """What is known about a model: paper, year, input sizes, parameters at 1000 classes, torchvision twin, and
    its published weights (tag, URL, hash, classes, preprocessing, accuracy; read from torchvision or timm)."""
    from zoo.pretrained import available

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
        "weights": [w.info() for w in available(name).values()],
    }


def entry(name: str) -> ModelEntry:
    """The registry record of ``name`` (raises :class:`UnknownModelError` with suggestions)."""
    return _entry(name)


def _import_models() -> None:
    # Importing the package runs every @register_model decorator once.
    import zoo.models  # noqa: F401
