"""Resuming with ``trainer.max_epochs`` past the end of the checkpoint's schedule is one line, before training
and before the run directory is touched (issue 20 item 8): the restored scheduler keeps its old length, so the
extra epochs would train at its final learning rate (0 for cosine) without a word."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import run_cli
from zoo.errors import ZooError


def _train(*args: str) -> subprocess.CompletedProcess:
    return run_cli("train.py", *args)


@pytest.mark.slow
def test_a_resume_past_the_cosine_schedule_is_refused_and_leaves_the_run_alone(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = _train("model=mlp", "scheduler=cosine", "trainer.max_epochs=2", f"hydra.run.dir={run}")
    assert first.returncode == 0, first.stderr[-3000:]
    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["lr_schedulers"][0]["T_max"] == 2
    before = {p: p.read_bytes() for p in [run / "status.json", run / ".hydra" / "overrides.yaml", last]}

    proc = _train(f"ckpt_path={last}", "trainer.max_epochs=4")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0] == (f"error: ckpt_path={last}: its cosine schedule has ended after 2 epochs, T_max=2; "
                        "trainer.max_epochs=4 would train on at its final learning rate. Resume with "
                        "trainer.max_epochs<=2, or start a new run from these weights with its own schedule: "
                        f"model.pretrained={last} trainer.max_epochs=4 (and no ckpt_path)")
    assert {p: p.read_bytes() for p in before} == before  # status ok, overrides and checkpoint as they were
    assert json.loads((run / "status.json").read_text())["status"] == "ok"

    from zoo.run import check_resume  # the schedule's own length passes

    check_resume(OmegaConf.create({"model": {"name": "mlp"}, "trainer": {"max_epochs": 2}}), str(last))


def _fake(schedule: str, options: dict, state: dict) -> tuple[dict, object]:
    """A checkpoint after 2 epochs of 63 steps whose first scheduler is ``schedule`` with ``state``."""
    from tests.test_checkpoints import legacy_hparams
    from zoo.checkpoint import Choice, read_record

    record = read_record({"hyper_parameters": legacy_hparams()}, "fake.ckpt")
    record = dataclasses.replace(record, scheduler=Choice(schedule, options))
    return {"epoch": 1, "global_step": 126, "lr_schedulers": [state]}, record


@pytest.mark.parametrize(("schedule", "options", "state", "ok_epochs", "message"), [
    ("one_cycle", {"interval": "step"}, {"total_steps": 126}, 2,
     "its one_cycle schedule has ended after 126 optimizer steps (epoch 2), total_steps=126"),
    ("polynomial", {"interval": "epoch"}, {"total_iters": 5, "power": 1.0}, 5,
     "its polynomial schedule has ended after 5 epochs, total_iters=5"),
    ("cosine", {"interval": "step"}, {"T_max": 252}, 4,
     "its cosine schedule has ended after 252 optimizer steps (epoch 4), T_max=252"),
])
def test_each_schedule_length_is_compared_in_its_own_units(schedule: str, options: dict, state: dict,
                                                           ok_epochs: int, message: str) -> None:
    from zoo.run import _check_schedule_length

    ckpt, record = _fake(schedule, options, state)
    cfg = OmegaConf.create({"trainer": {"max_epochs": ok_epochs}})
    _check_schedule_length(cfg, "fake.ckpt", ckpt, record)  # as long as the schedule: fine
    cfg.trainer.max_epochs = ok_epochs + 1
    with pytest.raises(ZooError, match=re.escape(message)):
        _check_schedule_length(cfg, "fake.ckpt", ckpt, record)


def test_schedules_without_an_end_resume_to_any_length() -> None:
    from zoo.run import _check_schedule_length

    ckpt, record = _fake("step", {"interval": "epoch", "step_size": 1}, {"step_size": 1, "gamma": 0.1})
    _check_schedule_length(OmegaConf.create({"trainer": {"max_epochs": 1000}}), "fake.ckpt", ckpt, record)
    assert record.scheduler.name == "step"


def test_a_resume_with_model_options_that_change_the_network_is_one_line(tmp_path: Path) -> None:
    """``model.norm=batch`` on a resume of a run without it: the checkpoint's weights do not fit the network the
    config asks for. Before anything is built or written, one line names the keys (it was Lightning's
    load_state_dict traceback after the run directory had been taken over)."""
    run = tmp_path / "run"
    tiny = ["model=lenet5", "scheduler=none", "test=false", "+trainer.limit_train_batches=2",
            "+trainer.limit_val_batches=1", "callbacks.diagnostics=null", "callbacks.curves=null"]
    first = _train(*tiny, "trainer.max_epochs=1", f"hydra.run.dir={run}")
    assert first.returncode == 0, first.stderr[-3000:]
    last = run / "checkpoints" / "last.ckpt"
    before = {p: p.read_bytes() for p in [run / "status.json", run / ".hydra" / "overrides.yaml", last]}

    proc = _train(f"ckpt_path={last}", "trainer.max_epochs=2", "model.norm=batch")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[0].startswith(f"error: {last}: weights do not fit 'lenet5': missing keys: norm1.weight"), lines
    assert lines[0].endswith(f"start a new run from these weights with model.pretrained={last})")
    assert {p: p.read_bytes() for p in before} == before

    same = _train(f"ckpt_path={last}", "trainer.max_epochs=2")  # the run's own options resume
    assert same.returncode == 0, same.stderr[-3000:]
