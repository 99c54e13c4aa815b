"""zoo: classic networks in PyTorch, faithful and readable. The public API is below, nothing else.

The names are imported on first use (PEP 562), so ``from zoo import cli`` in ``train.py`` checks a command
line without loading torch: a mistyped model name fails in a tenth of a second, not after torch's import.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["create_model", "list_models", "model_info", "register_model", "load_pretrained"]
__version__ = "0.1.0"

# public name -> the module that defines it
_API = {
    "create_model": "zoo.registry",
    "list_models": "zoo.registry",
    "model_info": "zoo.registry",
    "register_model": "zoo.registry",
    "load_pretrained": "zoo.weights",
}


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value  # later look-ups are plain attribute reads
        return value
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
