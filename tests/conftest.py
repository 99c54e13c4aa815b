"""Shared test helpers: the repository root and two runners for the entry points, as subprocesses
(:func:`run_script`) and in this process (:func:`run_cli`, for the runs whose process is not what is tested)."""

from __future__ import annotations

import io
import logging
import os
import runpy
import signal
import subprocess
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str, timeout: float = 300, env: dict[str, str] | None = None,
               cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run ``python <script> args...`` from the repository root and capture its output."""
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}  # tests see what users see
    full_env.update(env or {})
    return subprocess.run([sys.executable, script, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


# The process-wide state an entry point may change: a run in this process must leave none of it behind.
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)


def _show_on_stderr(message: Any, category: type, filename: str, lineno: int, file: Any = None,
                    line: str | None = None) -> None:
    """Warnings go to (captured) stderr, as in a process of its own, not into pytest's warning list."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextmanager
def _process_state_restored() -> Iterator[None]:
    """What ``python train.py`` changes for the whole process, put back when an in-process run ends:
    cwd, argv, sys.path, os.environ, signal handlers and mask, warnings filters, logging (Hydra configures the
    root logger per job, with a file handler into the run directory), Hydra's global state, torch's global
    settings and random number generators, and the matplotlib figures the run opened."""
    import random

    import numpy as np
    import torch
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    cwd, argv, path, environ = os.getcwd(), sys.argv[:], sys.path[:], dict(os.environ)
    handlers = {s: signal.getsignal(s) for s in _SIGNALS}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])  # blocked and ignored signals are what children inherit
    loggers = {name: (lg.level, lg.handlers[:], lg.propagate, lg.disabled)
               for name, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    root = logging.getLogger()
    root_state = (root.level, root.handlers[:])
    logging_disable = logging.root.manager.disable
    hydra_cfg = HydraConfig.instance().cfg
    torch_state = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
                   torch.is_deterministic_algorithms_warn_only_enabled(), torch.get_default_dtype(),
                   torch.get_float32_matmul_precision(), torch.backends.cudnn.deterministic,
                   torch.backends.cudnn.benchmark, torch.is_grad_enabled())
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    pyplot = sys.modules.get("matplotlib.pyplot")
    figures = set(pyplot.get_fignums()) if pyplot else set()
    try:
        with warnings.catch_warnings():
            warnings.resetwarnings()  # the filters a fresh interpreter starts with, not pytest's
            for action, category, module in (("default", DeprecationWarning, "__main__"),
                                             ("ignore", DeprecationWarning, ""),
                                             ("ignore", PendingDeprecationWarning, ""), ("ignore", ImportWarning, ""),
                                             ("ignore", ResourceWarning, "")):
                warnings.filterwarnings(action, category=category, module=module, append=True)
            warnings.showwarning = _show_on_stderr
            yield
    finally:
        os.chdir(cwd)
        sys.argv[:], sys.path[:] = argv, path
        os.environ.clear()
        os.environ.update(environ)
        for s, h in handlers.items():
            signal.signal(s, h)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for h in root.handlers:
            if h not in root_state[1]:
                h.close()
        root.setLevel(root_state[0])
        root.handlers[:] = root_state[1]
        for name, (level, hs, propagate, disabled) in loggers.items():  # loggers made during the run are the
            lg = logging.getLogger(name)                                     # libraries' own (imported then): kept
            for h in lg.handlers:
                if h not in hs:
                    h.close()
            lg.setLevel(level)
            lg.handlers[:], lg.propagate, lg.disabled = hs, propagate, disabled
        logging.disable(logging_disable)
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = hydra_cfg
        (threads, deterministic, warn_only, dtype, matmul, cudnn_det, cudnn_bench, grad) = torch_state
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_default_dtype(dtype)
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn_det, cudnn_bench
        torch.set_grad_enabled(grad)
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
        if "matplotlib.pyplot" in sys.modules:  # the figures the run opened, not the test's own
            pyplot = sys.modules["matplotlib.pyplot"]
            for number in set(pyplot.get_fignums()) - figures:
                pyplot.close(number)


def run_cli(script: str, *args: str, timeout: float = 300, env: dict[str, str] | None = None,
            cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """``python <script> args...`` (or ``python -m MODULE args...``) run in this process, as :func:`run_script`
    runs it in a new one, with the same kind of result: exit code, stdout, stderr.

    Each subprocess pays 4-8 s of torch + Lightning + Hydra import before it checks anything; here that is paid
    once per test worker. The run sees the command line (``sys.argv``), the environment (without
    ``HYDRA_FULL_ERROR``, plus ``env``) and ``cwd`` a process would, and everything it changes for the process
    is put back (:func:`_process_state_restored`). ``sys.exit(code)`` is the exit code; an exception that
    escapes is what the interpreter would make of it: its traceback on stderr and exit code 1. ``timeout`` is
    accepted for the same signature; an in-process run is not interrupted.

    Use :func:`run_script` where the process itself is tested: signals, kills, DDP, imports, exit paths.
    """
    del timeout
    module = args[0] if script == "-m" else None
    argv = list(args[1:]) if module else list(args)
    stdout, stderr = io.StringIO(), io.StringIO()
    code: int = 0
    with _process_state_restored():
        os.environ.pop("HYDRA_FULL_ERROR", None)  # tests see what users see
        os.environ.update(env or {})
        os.chdir(cwd)
        target = module or str(Path(cwd, script))
        sys.argv[:] = [target, *argv]
        with redirect_stdout(stdout), redirect_stderr(stderr):
            try:
                if module:
                    saved = sys.modules.pop(module, None)  # executed afresh as __main__, as ``python -m`` does
                    try:
                        runpy.run_module(module, run_name="__main__", alter_sys=True)
                    finally:
                        if saved is not None:
                            sys.modules[module] = saved
                else:
                    sys.path.insert(0, str(Path(target).parent))  # as ``python script`` puts its folder first
                    runpy.run_path(target, run_name="__main__")
            except SystemExit as e:
                if e.code is None or isinstance(e.code, int):
                    code = e.code or 0
                else:  # sys.exit("message"): the message on stderr, exit 1
                    print(e.code, file=sys.stderr)
                    code = 1
            except BaseException:  # noqa: BLE001 - what escapes is the interpreter's: a traceback, exit 1
                traceback.print_exc(file=sys.stderr)
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
    return subprocess.CompletedProcess([sys.executable, *( ["-m", module] if module else [script]), *argv], code,
                                       stdout.getvalue(), stderr.getvalue())


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files that hold slow end-to-end tests run first, each file's tests still together and in order (so
    module fixtures are built once). pytest-xdist hands tests out in this order: a 40-second test no longer
    starts near the end while the other worker has nothing left to run."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # a stable sort: the order within each group stays
