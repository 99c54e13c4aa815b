"""Shared test helpers: the repository root and a runner for the entry points as subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str, timeout: float = 300, env: dict[str, str] | None = None,
               cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run ``python <script> args...`` from the repository root and capture its output."""
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}  # tests see what users see
    full_env.update(env or {})
    return subprocess.run([sys.executable, script, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a module of model tests: with ``pytest -n 2`` on 2 cores, more threads only spin
    against each other (``make test`` sets OMP_NUM_THREADS=1; this holds when a file is run on its own)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    """Each test gets the environment it started with back: Lightning's DDP setup and submitit write
    MASTER_PORT, RANK, SUBMITIT_* into ``os.environ``, and a later test's subprocess in the same worker would
    inherit them (a basic-launcher sweep then takes itself for a submitit task)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
