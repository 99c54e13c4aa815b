"""Backbones with timm's conventions: ``features_only``, ``out_indices``, ``feature_info``, ``num_classes=0``.

``create_model(name, features_only=True, out_indices=(1, 2, 3, 4))`` returns a network whose forward gives
the list of feature maps at those indices, and whose ``feature_info`` says each map's channels, reduction
(stride relative to the input) and module, as timm's ``FeatureListNet`` does. For ResNet the maps are
timm's: ``relu`` (stride 2), ``layer1`` (4), ``layer2`` (8), ``layer3`` (16), ``layer4`` (32).

No model file lists its stages. They are found once by running the network on the meta device (no memory,
no arithmetic) with a hook on every module: the reduction of each 4-D output is rounded to a power of two,
and the outermost module that finishes last at each reduction is that stage's output (the first block of
the next stage starts at the old resolution, but one level deeper than the stage containers). The last map
is ``forward_features``' own output, so it includes the final normalisation and activation that some
families apply functionally (DenseNet, pre-activation ResNet). A module called several times (a shared
ReLU) is tapped at the right call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from zoo.errors import ZooError


class FeatureInfo(list):
    """timm's ``feature_info``: one dict per map (``num_chs``, ``reduction``, ``module``) with accessors."""

    def channels(self) -> list[int]:
        return [f["num_chs"] for f in self]

    def reduction(self) -> list[int]:
        return [f["reduction"] for f in self]

    def module_name(self) -> list[str]:
        return [f["module"] for f in self]


def remove_classifier(model: nn.Module, head: set[str]) -> None:
    """Replace the modules owning the classifier keys ``head`` by ``nn.Identity`` (timm's ``num_classes=0``).

    ``forward`` then returns the pooled features (N x C; VGG/AlexNet: the 4096-wide penultimate layer).
    """
    for owner in sorted({k.rsplit(".", 1)[0] for k in head}):
        parent, _, attr = owner.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, nn.Identity())


def _reduction(size_in: int, size_out: int) -> int:
    return 2 ** max(0, round(math.log2(size_in / size_out)))


def find_stages(name: str, in_channels: int, kwargs: dict[str, Any], head: set[str],
                size: int | None = None) -> list[dict[str, Any]]:
    """The stage outputs of ``name``: ``module``, ``call`` (which call of it), ``num_chs``, ``reduction``."""
    from zoo.registry import create_model, entry

    e = entry(name)
    if e.kind != "image":
        raise ZooError(f"features_only: {name!r} is a {e.kind} model; feature maps come from image CNNs")
    size = size or e.input_size[-1]
    with torch.device("meta"):
        model = create_model(name, num_classes=1000, in_channels=in_channels, **kwargs).eval()
    remove_classifier(model, head)  # NiN's classifier is its last convolution
    events: list[tuple[str, int, tuple[int, ...]]] = []
    calls: dict[str, int] = {}

    def hook(module_name: str) -> Any:
        def record(_m: nn.Module, _args: Any, out: Any) -> None:
            calls[module_name] = calls.get(module_name, 0) + 1
            if isinstance(out, torch.Tensor) and out.ndim == 4:
                events.append((module_name, calls[module_name], tuple(out.shape)))
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            out = model.forward_features(torch.empty(1, in_channels, size, size, device="meta"))
    finally:
        for h in handles:
            h.remove()
    stages: dict[int, dict[str, Any]] = {}
    for module_name, call, shape in events:  # the outermost module that finishes last at each reduction
        r, depth = _reduction(size, shape[2]), module_name.count(".")
        if r not in stages or depth <= stages[r]["depth"]:
            stages[r] = {"module": module_name, "call": call, "num_chs": shape[1], "reduction": r, "depth": depth}
    if not stages:
        raise ZooError(f"features_only: {name!r} has no feature maps (no 4-D activations); valid: image CNNs")
    ordered = [stages[r] for r in sorted(stages)]
    if isinstance(out, torch.Tensor) and out.ndim == 4 and _reduction(size, out.shape[2]) == ordered[-1]["reduction"]:
        ordered[-1] = {**ordered[-1], "module": "forward_features", "call": 1, "num_chs": out.shape[1]}
    return ordered


class _Done(Exception):
    """Raised by the last needed hook: the rest of the network need not run."""


class FeatureListNet(nn.Module):
    """The network's modules under their own names (its state_dict keys unchanged), returning feature maps."""

    def __init__(self, model: nn.Module, name: str, in_channels: int, out_indices: Sequence[int] | None,
                 kwargs: dict[str, Any], head: set[str]) -> None:
        super().__init__()
        stages = find_stages(name, in_channels, kwargs, head)
        n = len(stages)
        indices = tuple(range(n)) if out_indices is None else tuple(int(i) for i in out_indices)
        bad = [i for i in indices if not -n <= i < n]
        if bad:
            raise ZooError(f"out_indices={tuple(out_indices or ())}: {name!r} has {n} feature maps, valid indices "
                           f"0..{n - 1} (reductions {', '.join(str(s['reduction']) for s in stages)})")
        self.out_indices = tuple(i % n for i in indices)
        chosen = [stages[i] for i in self.out_indices]
        self.feature_info = FeatureInfo({k: s[k] for k in ("num_chs", "reduction", "module")} for s in chosen)
        for child_name, child in model.named_children():  # same keys as the full network
            self.add_module(child_name, child)
        object.__setattr__(self, "_net", model)  # not a submodule: its modules are registered above
        self._taps = [(s["module"], s["call"]) for s in chosen]
        self._outputs: dict[tuple[str, int], torch.Tensor] = {}
        self._calls: dict[str, int] = {}
        for module_name in dict.fromkeys(m for m, _ in self._taps if m != "forward_features"):
            model.get_submodule(module_name).register_forward_hook(self._hook(module_name))

    def _hook(self, module_name: str) -> Any:
        def capture(_m: nn.Module, _args: Any, out: torch.Tensor) -> None:
            self._calls[module_name] = self._calls.get(module_name, 0) + 1
            key = (module_name, self._calls[module_name])
            if key in self._taps:
                self._outputs[key] = out
                if len(self._outputs) == len(set(self._taps)):
                    raise _Done
        return capture

    def train(self, mode: bool = True) -> FeatureListNet:
        self._net.training = mode
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self._outputs, self._calls = {}, {}
        try:
            self._outputs[("forward_features", 1)] = self._net.forward_features(x)
        except _Done:
            pass
        outputs = [self._outputs[t] for t in self._taps]  # N x C_i x H/r_i x W/r_i
        self._outputs = {}
        return outputs
