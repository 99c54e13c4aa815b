"""The Trainer train.py builds profiles nothing unless asked (zoo.run.NoProfiler), and a chosen profiler works."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from pytorch_lightning.profilers import SimpleProfiler

from tests.conftest import ROOT


def _built_trainer(tmp_path: Path, *overrides: str) -> pl.Trainer:
    from zoo.run import build_trainer

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"paths.output_dir={tmp_path}", *overrides])
    return build_trainer(cfg)


def test_the_default_trainer_wraps_hooks_in_one_shared_no_op_context(tmp_path: Path) -> None:
    from zoo.run import NoProfiler

    trainer = _built_trainer(tmp_path)
    assert isinstance(trainer.profiler, NoProfiler)
    context = trainer.profiler.profile("[Callback]NaNGuard.on_train_batch_end")
    assert context is trainer.profiler.profile("run_training_batch")  # no object built per hook call
    with context as entered, context:  # usable again, and nested (Lightning nests hook calls)
        assert entered is None
    assert trainer.profiler.summary() == ""


def test_a_profiler_chosen_on_the_command_line_still_profiles(tmp_path: Path) -> None:
    trainer = _built_trainer(tmp_path, "+trainer.profiler=simple")
    assert isinstance(trainer.profiler, SimpleProfiler)
    with trainer.profiler.profile("step"):
        pass
    assert "step" in trainer.profiler.recorded_durations
