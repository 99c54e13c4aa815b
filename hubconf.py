"""torch.hub entry points: ``torch.hub.load(repo_dir, "resnet18", source="local", num_classes=10)``.

One entry point per registered model, generated from the registry, so a new model file is on the hub
as soon as it registers. ``pretrained=True`` (the default published weights) or ``pretrained="TAG"`` goes
through ``zoo.create_model`` and torch.hub's cache, like torchvision's own hubconf; ``pretrained=PATH``
loads a file through ``zoo.load_pretrained``: weights-only, and a checkpoint's record (zoo.checkpoint) read as
data, checked against the weights before anything is built.
"""

from __future__ import annotations

from typing import Any as _Any

import zoo.pretrained as _pretrained
import zoo.registry as _registry
import zoo.weights as _weights

dependencies = ["torch", "torchvision"]


def _entry_point(name: str) -> _Any:
    def build(pretrained: bool | str | None = None, **kwargs: _Any) -> _Any:
        if pretrained and _pretrained.requested(name, pretrained) is None:  # a path (or a file in the hub cache)
            return _weights.load_pretrained(_pretrained.resolve(name, pretrained)[0], name=name, **kwargs)
        return _registry.create_model(name, pretrained=pretrained or None, **kwargs)

    e = _registry.entry(name)
    build.__name__ = build.__qualname__ = name
    build.__doc__ = (f"{name}: {e.paper} ({e.year}). Keyword arguments go to zoo.create_model "
                     "(num_classes, in_channels, ...); pretrained=True or a tag loads published weights, "
                     "pretrained=PATH a file, safely.")
    return build


for _name in _registry.list_models():
    globals()[_name] = _entry_point(_name)
