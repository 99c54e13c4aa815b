"""The progress bar: Lightning's Rich bar, fed at its redraw rate."""

from __future__ import annotations

import math
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar as _LightningRichProgressBar


class RichProgressBar(_LightningRichProgressBar):
    """Lightning's Rich progress bar, fed at most ``refresh_rate`` times a second instead of after every batch.

    The bar is redrawn ``refresh_rate`` times a second by a background thread. Lightning's callback updates
    it after every batch all the same: it moves the bar and reads every logged metric
    (``trainer.progress_bar_metrics``, an ``.item()`` per value), about 75 us, 1.6% of a LeNet-5 step on
    this project's CPU, and mostly for updates no redraw ever shows. Here a batch updates the bar only once
    that interval has passed, and the last batch of a loop always does, so the bar still ends full.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next_update = 0.0

    def _due(self, current: int, total: Any) -> bool:
        if not self.is_enabled:
            return False
        if isinstance(total, list):  # per dataloader
            total = total[self._current_eval_dataloader_idx or 0] if total else math.inf
        now = time.monotonic()
        if now < self._next_update and current < total:
            return False
        self._next_update = now + 1.0 / self.refresh_rate
        return True

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._due(batch_idx + 1, self.total_train_batches):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        total = trainer.num_sanity_val_batches if trainer.sanity_checking else trainer.num_val_batches
        if self._due(batch_idx + 1, total):
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._due(batch_idx + 1, trainer.num_test_batches):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._due(batch_idx + 1, trainer.num_predict_batches):
            super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

