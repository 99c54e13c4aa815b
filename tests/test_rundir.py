"""A run directory belongs to one live run, and Ctrl-C leaves a true status.json (real train.py processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_script
from zoo import rundir
from zoo.errors import ZooError

LONG = ["trainer.max_epochs=200", "callbacks.progress_bar.refresh_rate=0", "trainer.enable_model_summary=false",
        "callbacks.diagnostics=null"]


def _as_from_a_shell() -> None:
    """The child's Ctrl-C as a shell gives it: default disposition, not blocked. An ignored or blocked SIGINT is
    inherited through fork and exec, and code that ran in the test worker may have changed the worker's (Lightning,
    for one, leaves SIGINT ignored once it has handled a KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _start(run_dir: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.Popen([sys.executable, "train.py", f"hydra.run.dir={run_dir}", *LONG, *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_as_from_a_shell)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < end, f"{path} did not appear"
        time.sleep(0.2)


def test_lock_refuses_a_live_holder_and_takes_over_a_stale_one(tmp_path: Path) -> None:
    with rundir.locked(tmp_path):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
        assert rundir.holder(tmp_path) is None  # our own lock holds nothing against us
    assert not (tmp_path / ".lock").exists()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / ".lock").write_text(json.dumps({"pid": live.pid, "host": os.uname().nodename}))
        with pytest.raises(ZooError, match=rf"is in use by another run \(pid {live.pid}"):
            rundir.check_free(tmp_path)
    finally:
        live.kill()
        live.wait()
    with rundir.locked(tmp_path):  # its process is gone: the lock is stale and taken over
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    (tmp_path / ".lock").write_text("not json")  # a lock file is data: nonsense in it holds nothing
    assert rundir.holder(tmp_path) is None


@pytest.mark.slow
def test_second_run_into_a_live_runs_directory_refuses_then_ctrl_c_records_interrupted(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = _start(run_dir)
    try:
        _wait_for(run_dir / "checkpoints" / "last.ckpt", first)  # an epoch has run
        config = (run_dir / ".hydra" / "config.yaml").read_text()
        second = run_script("train.py", f"hydra.run.dir={run_dir}", "model=mlp", *LONG)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {run_dir} is in use by another run (pid {first.pid}")
        assert (run_dir / ".hydra" / "config.yaml").read_text() == config  # nothing of the live run touched
        assert json.loads((run_dir / "status.json").read_text())["status"] == "running"

        first.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 130, err[-3000:]
    assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"
    assert "interrupted: " in err and "ckpt_path=" in err
    assert not (run_dir / ".lock").exists()
