"""What produced a run: ``RUN/provenance.json``, written at the start of every training run.

A metric is only comparable with another when one knows the code and the libraries behind each. Hydra's
``.hydra/`` keeps the composed config and the overrides; this file adds the rest: the zoo version and, in a
git checkout, the commit (and whether the tree had uncommitted changes), the Python version, every installed
distribution with its version (a ``pip freeze`` of the environment), the devices, and the full command line.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

import zoo
from zoo.extras import DISTRIBUTION

FILE = "provenance.json"


def _zoo_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # a checkout that was not pip-installed
        return zoo.__version__


def git_state(source: Path | None = None) -> dict[str, Any] | None:
    """The commit of the checkout zoo is imported from, and whether it had changes; None for an installed wheel."""
    source = source or Path(zoo.__file__).resolve().parent.parent
    if not (source / ".git").exists():
        return None

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None, "source": str(source)}


def packages() -> dict[str, str]:
    """Every distribution installed in this environment, name -> version, sorted by name."""
    return dict(_installed())


@functools.cache
def _installed() -> tuple[tuple[str, str], ...]:
    """Read once per process (every metadata file of the environment): every job of a sweep shares it, and what a
    later ``pip install`` changes on disk is not what this process has imported."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name not in found:  # the first on sys.path wins, as it does for imports
            found[name] = dist.version
    return tuple(sorted(found.items(), key=lambda kv: kv[0].lower()))


def collect(argv: list[str] | None = None) -> dict[str, Any]:
    """The provenance record of this process (see the module docstring)."""
    argv = list(sys.argv if argv is None else argv)
    cuda = torch.cuda.is_available()
    return {
        "zoo_version": _zoo_version(),
        "git": git_state(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "command": shlex.join([Path(sys.executable).name, *argv]),
        "argv": argv,
        "cwd": os.getcwd(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else ["cpu"],
        "packages": packages(),
    }


def record(run_dir: Path | str, argv: list[str] | None = None) -> Path | None:
    """Write ``run_dir/provenance.json`` (on the first process only: DDP ranks share the run directory)."""
    from zoo.sweeps import process_rank

    if process_rank() != 0:
        return None
    path = Path(run_dir) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{FILE}.tmp")
    tmp.write_text(json.dumps(collect(argv), indent=2) + "\n")
    tmp.replace(path)
    return path
