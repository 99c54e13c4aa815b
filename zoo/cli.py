"""What the thin entry points share: user errors as one line, and a check of config-group names.

A mistake a user can make ends in ``error: <what was wrong and what is valid>`` on stderr and exit
code 2, with no traceback (``HYDRA_FULL_ERROR=1`` shows it).
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zoo.errors import ZooError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
_GROUP_OVERRIDE = re.compile(r"^[+~]?([A-Za-z_][\w/]*)=(.*)$")


def _as_user_error(exc: BaseException) -> ZooError | None:
    """The ZooError behind ``exc``, also when Hydra's instantiate wrapped it."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, ZooError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a :class:`ZooError` (or one wrapped by Hydra) into one line on stderr and exit 2."""
    try:
        yield
    except Exception as e:
        err = _as_user_error(e)
        if err is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        fail(str(err))


def group_options(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    """The options of a config group (``model`` -> ``["alexnet", ...]``), private ``_*.yaml`` left out."""
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml") if not p.stem.startswith("_"))


def check_overrides(argv: list[str], config_dir: Path = CONFIG_DIR) -> None:
    """Reject ``group=name`` overrides whose config does not exist, naming the valid ones."""
    for arg in argv:
        m = _GROUP_OVERRIDE.match(arg)
        if not m or not (config_dir / m.group(1)).is_dir():
            continue
        group, value = m.groups()
        if value in ("null", "") or any(c in value for c in "()[]{}$"):
            continue  # sweep functions and interpolations are Hydra's to judge
        options = group_options(group, config_dir)
        for choice in value.split(","):
            if choice and not (config_dir / group / f"{choice}.yaml").is_file():
                close = difflib.get_close_matches(choice, options, n=3, cutoff=0.5)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ZooError(f"unknown {group} {choice!r}{hint}; valid: {', '.join(options)}")


def main(hydra_main: Callable[[], Any]) -> None:
    """Run a ``@hydra.main`` function after checking the command line's group names."""
    try:
        check_overrides(sys.argv[1:])
    except ZooError as e:
        fail(str(e))
    hydra_main()
