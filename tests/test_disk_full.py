"""A save that runs out of space (here: past a real file-size limit, EFBIG) is one line naming the path and the
free space, and the checkpoint saved before it stays whole."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, run_cli

# In a child process: writes past 64 KB fail with EFBIG (SIGXFSZ ignored), as a full disk fails with ENOSPC.
CHILD = """
import resource, signal, sys, torch
from zoo.errors import ZooError
from zoo.weights import atomic_save
path = sys.argv[1]
atomic_save({"w": torch.arange(1000.0)}, path)  # 4 KB: fits
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
try:
    atomic_save({"w": torch.zeros(100_000)}, path)  # 400 KB: does not
except ZooError as e:
    print(e)
    sys.exit(2)
"""


def test_a_save_past_the_file_size_limit_is_one_line_and_keeps_the_earlier_file(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stdout + proc.stderr[-2000:]
    assert lines[0].startswith(f"cannot save {path}: File too large (") and " free on " in lines[0], lines[0]
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(1000.0))  # the earlier save, whole
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temp file left behind


def test_a_full_disk_is_recognised_behind_torch_save_s_runtime_error(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC from the writer, wrapped by torch.save in a RuntimeError as it does EFBIG."""
    import errno

    from zoo import weights
    from zoo.errors import ZooError

    weights.atomic_save({"w": torch.ones(3)}, tmp_path / "a.pt")

    def full(obj: object, f: object) -> None:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") from None

    monkeypatch.setattr(weights.torch, "save", full)
    with pytest.raises(ZooError, match=r"cannot save .*a\.pt: No space left on device \(.* free on "):
        weights.atomic_save({"w": torch.zeros(3)}, tmp_path / "a.pt")
    monkeypatch.undo()
    assert torch.equal(torch.load(tmp_path / "a.pt", weights_only=True)["w"], torch.ones(3))


def _limit_file_size(limit: int) -> Callable[[], None]:
    def preexec() -> None:  # in the child: a write past ``limit`` bytes fails with EFBIG instead of killing it
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return preexec


@pytest.mark.slow
def test_train_py_out_of_space_is_one_line_exit_2_and_the_checkpoints_stay(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    first = run_cli("train.py", "model=mlp", "scheduler=step", "trainer.max_epochs=1", f"hydra.run.dir={run}")
    assert first.returncode == 0, first.stderr[-3000:]
    saved = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    assert set(saved) == {"best.ckpt", "last.ckpt"} and len(saved["last.ckpt"]) > 200_000
    # resumed for a second epoch, with files capped below a checkpoint's size: its first save fails
    proc = subprocess.run([sys.executable, "train.py", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
                           "trainer.max_epochs=2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                          preexec_fn=_limit_file_size(200_000))
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert re.fullmatch(rf"error: cannot save {re.escape(str(run / 'checkpoints'))}/(best|last)\.ckpt: File too "
                        r"large \([\d.]+ [KMGT]?B free on .*\); earlier checkpoints are intact, .*", errors[0])
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == saved  # whole, no temp files
    assert json.loads((run / "status.json").read_text())["status"] == "failed"
