"""The progress bar: Lightning's Rich bar, fed at its redraw rate, showing this epoch's running training loss.

Two changes to Lightning's ``RichProgressBar``:

- **Fed at the redraw rate.** The bar is redrawn ``refresh_rate`` times a second by a background thread, but
  Lightning's callback updates it after every batch all the same: it moves the bar and reads every logged
  metric (an ``.item()`` per value), mostly for updates no redraw ever shows. Here a batch updates the bar only
  once ``1 / refresh_rate`` seconds have passed, and the last batch of a loop always does, so it ends full.
  docs/benchmarks.md has the measured cost.
- **No stale numbers.** The tasks log ``train/loss_step`` every ``log_every_n_steps`` steps and
  ``train/loss_epoch`` at the end of an epoch, so a bar showing them would show the first step's loss for 49
  steps and the previous epoch's loss for a whole epoch. The bar shows ``train/loss`` instead: the mean over
  the batches of the current epoch so far (the task's ``train_stats``), read when the bar is updated.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichModelSummary as _LightningRichModelSummary
from pytorch_lightning.callbacks import RichProgressBar as _LightningRichProgressBar


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("\N{ELECTRIC LIGHT BULB} Tip:")


def quiet_lightning() -> None:
    """What Lightning prints on every run and a user can do nothing about goes: its advertisement for a logging
    service and a deprecation warning from its own code (``isinstance(treespec, LeafSpec)``)."""
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _NoTips) for f in logger.filters):
        logger.addFilter(_NoTips())
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


class RichModelSummary(_LightningRichModelSummary):
    """Lightning's model summary with the multiply-accumulates of one example (the task's ``example_input_array``,
    one sample of the data's shape): Lightning counts FLOPs, two per multiply-accumulate."""

    def summarize(self, summary_data: Any, total_parameters: int, trainable_parameters: int, model_size: float,
                  total_training_modes: Any, total_flops: int, **summarize_kwargs: Any) -> None:
        super().summarize(summary_data, total_parameters, trainable_parameters, model_size, total_training_modes,
                          total_flops, **summarize_kwargs)
        if total_flops:  # Lightning calls summarize on the global-zero process only
            from pytorch_lightning.utilities.model_summary.model_summary import get_human_readable_count
            from rich import get_console

            get_console().print(f"[bold]Total MACs[/]: {get_human_readable_count(total_flops // 2)} (one sample)")


class RichProgressBar(_LightningRichProgressBar):
    """Lightning's Rich progress bar, updated at most ``refresh_rate`` times a second, with a live training loss."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next_update = 0.0

    def _due(self, current: int, total: int | float) -> bool:
        """Whether batch ``current`` of ``total`` updates the bar: the interval has passed, or it is the last."""
        if not self.is_enabled:
            return False
        now = time.monotonic()
        if now < self._next_update and current < total:
            return False
        self._next_update = now + 1.0 / self.refresh_rate
        return True

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        stats = getattr(pl_module, "train_stats", None)
        if trainer.training and stats is not None and int(stats.count) > 0:  # in an epoch: its running mean
            items.pop("train/loss_step", None)
            items.pop("train/loss_epoch", None)  # the previous epoch's
            items["train/loss"] = float(stats.loss_sum / stats.count)
        else:
            items.pop("train/loss_step", None)  # between epochs train/loss_epoch is the epoch just finished
        return items

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._due(batch_idx + 1, self.total_train_batches):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        totals = trainer.num_sanity_val_batches if trainer.sanity_checking else trainer.num_val_batches
        if self._due(batch_idx + 1, totals[dataloader_idx]):
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._due(batch_idx + 1, trainer.num_test_batches[dataloader_idx]):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._due(batch_idx + 1, trainer.num_predict_batches[dataloader_idx]):
            super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
