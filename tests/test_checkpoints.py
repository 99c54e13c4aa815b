"""Checkpoints: an exact resume after SIGKILL, atomic saves, loading anywhere, fine-tuning, predicting, ensembles."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# Tiny, deterministic runs: 6 batches of 64 digits an epoch, dropout on so the RNG state matters.
TINY = ["trainer.deterministic=true", "trainer.accelerator=cpu", "+trainer.limit_train_batches=6",
        "data.val_size=200", "data.test_size=200", "model.dropout=0.5", "trainer.enable_model_summary=false",
        "scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.5"]


class StallAfterEpoch:
    """A Lightning callback (imported by the subprocess) that signals, then hangs, after epoch ``epoch``.

    It hangs when the next epoch starts: ``last.ckpt`` for ``epoch`` is written by then (Lightning saves it
    after validation, which follows ``on_train_epoch_end``), so the test can SIGKILL a run at a known
    point instead of racing it.
    """

    def __new__(cls, epoch: int, marker: str):  # built lazily so importing this file needs no Lightning
        import pytorch_lightning as pl

        class _Stall(pl.Callback):
            def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
                if trainer.current_epoch == epoch + 1:
                    Path(marker).write_text(str(os.getpid()))
                    time.sleep(600)

        return _Stall()


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["ZOO_LOG_DIR"] = str(tmp_path / "stray_outputs")  # a resume that picked a new run dir would land here
    return env


def _train(args: list[str], tmp_path: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=600, **kw)


def _net_weights(path: Path) -> dict[str, torch.Tensor]:
    sd = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in sd.items() if k.startswith("net.")}


@pytest.mark.slow
def test_sigkill_after_epoch_then_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    epochs = 4
    ref_dir, cut_dir = tmp_path / "ref", tmp_path / "cut"
    ref = _train([*TINY, f"trainer.max_epochs={epochs}", f"hydra.run.dir={ref_dir}"], tmp_path)
    assert ref.returncode == 0, ref.stderr[-2000:]

    marker = tmp_path / "stalled"
    stall = ["+callbacks.stall._target_=tests.test_checkpoints.StallAfterEpoch", "+callbacks.stall.epoch=1",
             f"+callbacks.stall.marker={marker}"]
    proc = subprocess.Popen([sys.executable, "train.py", *TINY, f"trainer.max_epochs={epochs}", *stall,
                             f"hydra.run.dir={cut_dir}"], cwd=ROOT, env=_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists(), proc.stderr.read()[-2000:] if proc.poll() is not None else "run never reached epoch 1"
    os.kill(proc.pid, signal.SIGKILL)  # a real kill: no hooks, no finally blocks
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (cut_dir / "metrics.json").exists()
    last = cut_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1
    events_before = set((cut_dir / "tensorboard").glob("events.*"))

    # Only the checkpoint path: the run's overrides and directory come from the run itself.
    resumed = _train([f"ckpt_path={last}", "~callbacks.stall"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not (tmp_path / "stray_outputs").exists()  # continued in the same run directory ...
    assert set((cut_dir / "tensorboard").glob("events.*")) > events_before  # ... and the same TensorBoard run

    a, b = _net_weights(ref_dir / "checkpoints" / "last.ckpt"), _net_weights(last)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ref_m = json.loads((ref_dir / "metrics.json").read_text())
    cut_m = json.loads((cut_dir / "metrics.json").read_text())
    ref_m.pop("checkpoint"), cut_m.pop("checkpoint")
    assert ref_m == cut_m and "test/acc" in ref_m
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["epoch"] == epochs - 1 and ckpt["global_step"] == epochs * 6
