"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates"): ``python train.py lr_find=true``.

Lightning's finder trains for ``NUM_STEPS`` steps while raising the learning rate exponentially from
``MIN_LR`` to ``MAX_LR`` on the optimizer itself, records the smoothed loss, restores the weights, and
suggests the rate where the loss falls fastest. Its ``update_attr`` looks for ``model.lr`` or
``model.hparams.lr`` and cannot reach zoo's nested ``hparams.optimizer["lr"]``, so the search runs with
``update_attr=False`` and the suggestion is written here: into the task's optimizer config (which
``configure_optimizers`` reads when training starts and the checkpoint records) and into ``cfg.optimizer.lr``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, open_dict

from zoo.errors import ZooError

MIN_LR, MAX_LR, NUM_STEPS = 1e-6, 1.0, 100
PLOT = "lr_find.png"


def find_lr(cfg: DictConfig, trainer: pl.Trainer, task: pl.LightningModule, dm: Any) -> float | None:
    """Run the range test, write ``RUN/lr_find.png``, print and adopt the suggested ``optimizer.lr``."""
    from pytorch_lightning.tuner import Tuner

    if "lr" not in task.hparams.optimizer:
        raise ZooError(f"lr_find=true needs an optimizer with an lr; optimizer has {sorted(task.hparams.optimizer)}")
    max_epochs = trainer.fit_loop.max_epochs
    trainer.fit_loop.max_epochs = NUM_STEPS  # the search may cross epochs: trainer.max_epochs=1 must not cut it short
    try:
        finder = Tuner(trainer).lr_find(task, datamodule=dm, min_lr=MIN_LR, max_lr=MAX_LR, num_training=NUM_STEPS,
                                        update_attr=False)
    finally:
        trainer.fit_loop.max_epochs = max_epochs
    if finder is None:  # fast_dev_run: Lightning skips the search
        return None
    lr = finder.suggestion()
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fig = finder.plot(suggest=lr is not None)
    ax = fig.axes[0]
    ax.set_title(f"learning-rate range test, {len(finder.results['lr'])} steps: suggested "
                 f"{'none' if lr is None else f'{lr:.3g}'} (steepest fall of the smoothed loss)", fontsize=9)
    fig.savefig(run_dir / PLOT, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    if lr is None:
        print(f"lr_find: too few steps for a suggestion ({len(finder.results['lr'])}); optimizer.lr stays "
              f"{task.hparams.optimizer['lr']}; plot: {run_dir / PLOT}", flush=True)
        return None
    print(f"lr_find: suggested optimizer.lr={lr:.3g} (was {task.hparams.optimizer['lr']}) after "
          f"{len(finder.results['lr'])} steps; plot: {run_dir / PLOT}", flush=True)
    task.hparams.optimizer["lr"] = lr
    with open_dict(cfg):
        cfg.optimizer.lr = lr
    record = getattr(task, "record", None)
    if record is not None and record.optimizer is not None:  # what the checkpoints will say training used
        from zoo.checkpoint import Choice

        chosen = Choice(record.optimizer.name, {**record.optimizer.options, "lr": lr})
        task.record = dataclasses.replace(record, optimizer=chosen)
    return lr
