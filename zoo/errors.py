"""The one exception type for mistakes a user can make (bad name, bad path, bad value).

Entry points catch it and print one line, ``error: <message>``, with a non-zero exit; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator


class ZooError(Exception):
    """A user-facing error: its message is the whole story, no traceback needed."""


def causes(exc: BaseException, limit: int = 10) -> Iterator[BaseException]:
    """``exc`` and the exceptions behind it, outermost first (Hydra's instantiate wraps what its target raised)."""
    seen = 0
    while exc is not None and seen <= limit:
        yield exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
