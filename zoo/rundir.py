"""A run directory belongs to one live run: a lock file with the holder's process id.

Two runs started into the same ``hydra.run.dir`` would silently mix their config, checkpoints, metrics
and TensorBoard events. ``RUN/.lock`` holds the process id and host of the run using it. A second run
into that directory refuses in one line while the holder lives; a lock left by a dead process (a run
that was killed) is stale and is taken over, so resuming a run into its own directory works.

Only the first process of a distributed run takes the lock: the others (Lightning's DDP children,
SLURM's tasks) are started into the same directory by design.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from zoo.errors import ZooError

LOCK = ".lock"
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


def _is_first_process() -> bool:
    return all(os.environ.get(v, "0") == "0" for v in _RANK_VARIABLES)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def holder(run_dir: str | Path) -> int | None:
    """The id of another live process holding ``run_dir``, or None (no lock, ours, our parent's, or stale)."""
    try:
        record = json.loads((Path(run_dir) / LOCK).read_text())
        pid, host = int(record["pid"]), str(record["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no lock, or not one of ours: a file is data, an unreadable lock holds nothing
    if pid in (os.getpid(), os.getppid()):
        return None
    if host != socket.gethostname():
        return pid  # another machine's process: cannot be checked from here, so it holds the directory
    return pid if _alive(pid) else None


def check_free(run_dir: str | Path) -> None:
    """Raise the one-line error if another live run holds ``run_dir``."""
    pid = holder(run_dir)
    if pid is not None:
        raise ZooError(f"{run_dir} is in use by another run (pid {pid}, see {Path(run_dir) / LOCK}); "
                       "give this run another hydra.run.dir, or stop that run first")


@contextmanager
def locked(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir`` for the duration of the block (first process of a run only)."""
    if not _is_first_process():
        yield
        return
    path = Path(run_dir) / LOCK
    check_free(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{LOCK}.{os.getpid()}")
    tmp.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n")
    os.replace(tmp, path)  # a stale lock is replaced whole
    try:
        yield
    finally:
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass
