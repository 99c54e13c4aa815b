"""``optimized_metric=`` must name a metric the task logs; a typo is one line before training, naming them all,
and the names each task declares are the ones it really logs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tests.conftest import ROOT, run_cli


def test_an_unknown_metric_is_one_line_before_training(tmp_path: Path) -> None:
    proc = run_cli("train.py", "model=mlp", "optimized_metric=val/nope", f"hydra.run.dir={tmp_path}", timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0] == ("error: optimized_metric=val/nope: classification training does not log it; it logs "
                        "train/loss_step, train/loss_epoch, train/acc, val/loss, val/acc, val/acc_top5")
    assert not (tmp_path / "checkpoints").exists()  # nothing trained


@pytest.mark.parametrize("data", ["mnist_tiny", "multi_digits", "binary_digits", "adding", "char_text"])
def test_the_declared_names_are_the_logged_names(data: str, tmp_path: Path) -> None:
    import pytorch_lightning as pl

    from zoo.run import build_task, check_optimized_metric
    from zoo.training.tasks import task_class

    model = "lstm" if data in ("adding", "char_text") else "mlp"
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"data={data}", f"model={model}", f"paths.output_dir={tmp_path}"])
    dm = instantiate(cfg.data)
    dm.setup()
    task = build_task(cfg, dm)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=2, log_every_n_steps=1,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu")
    trainer.fit(task, datamodule=dm)
    logged = {k for k in trainer.callback_metrics if k.startswith(("train/", "val/"))}
    declared = task_class(dm.task).metric_names(dm.facts())
    assert logged == set(declared) and len(declared) == len(set(declared))
    check_optimized_metric(cfg, dm.task, dm.facts())  # each data's default optimized_metric is one of them
    assert cfg.optimized_metric in declared
