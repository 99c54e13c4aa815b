"""A guard against diverged training: a NaN or infinite training loss stops the run with one clear error."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from zoo.errors import ZooError


class TrainingDiverged(ZooError):
    """The training loss became NaN or infinite: the trial's settings do not train."""


class NaNGuard(pl.Callback):
    """Stop training with a clear error as soon as the training loss is NaN or infinite.

    A diverged trial would otherwise train on garbage for all its remaining epochs, and its
    checkpoint and metrics would look like results. Each step only keeps its (detached) loss; every
    ``check_every_n_steps`` steps and at the end of each epoch the kept losses are tested together, in
    one host-device synchronisation, and the first non-finite one is reported with its epoch, batch and
    learning rate. So a GPU is not stalled on every step, and a CPU step pays a list append.
    """

    def __init__(self, check_every_n_steps: int = 1) -> None:
        if check_every_n_steps < 1:
            raise ZooError(f"NaNGuard.check_every_n_steps must be >= 1; got {check_every_n_steps}")
        self.every = check_every_n_steps
        self._window: list[tuple[torch.Tensor, int, int, float | None]] = []  # (loss, epoch, batch, lr)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._window = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        opts = trainer.optimizers
        lr = opts[0].param_groups[0]["lr"] if opts and opts[0].param_groups else None  # before any epoch-end step
        self._window.append((loss.detach(), trainer.current_epoch, batch_idx, lr))
        if len(self._window) >= self.every:
            self._check()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check()

    def _check(self) -> None:
        if not self._window:
            return
        window, self._window = self._window, []
        losses = torch.stack([w[0].float().mean() for w in window])
        finite = torch.isfinite(losses)
        if bool(finite.all()):  # the one host-device sync of the window
            return
        first = int((~finite).nonzero()[0])
        _, epoch, batch_idx, lr_value = window[first]
        lr = f" (learning rate {lr_value:.3g})" if lr_value is not None else ""
        raise TrainingDiverged(
            f"training diverged: train/loss became {float(losses[first])} at epoch {epoch}, batch {batch_idx}{lr}; "
            "lower optimizer.lr, or clip gradients with trainer.gradient_clip_val"
        )


