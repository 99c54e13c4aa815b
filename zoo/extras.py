"""Optional dependencies: a run that needs a missing one ends in one ``error:`` line naming the extra.

Each non-torch package that serves only some datasets or figures is an extra of the distribution
(pyproject.toml) rather than a dependency of every install; :func:`require` imports it where it is used.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from zoo.errors import ZooError

DISTRIBUTION = "zoo-models"  # the name on PyPI; the import name is `zoo`


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """``import module``, or a ZooError saying that ``purpose`` needs ``pip install 'zoo-models[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        package = module.partition(".")[0]
        hint = f"pip install '{DISTRIBUTION}[{extra}]'"
        raise ZooError(f"{purpose} needs {package}, which is not installed: {hint}") from e
