"""A guard against diverged training: a NaN or infinite training loss, or one that has blown up far past where it
started, stops the run with one clear error."""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch

from zoo.errors import ZooError


class TrainingDiverged(ZooError):
    """The training loss became NaN or infinite: the trial's settings do not train."""


class NaNGuard(pl.Callback):
    """Stop training with a clear error as soon as the training loss is NaN or infinite, or has diverged.

    A diverged trial would otherwise train on garbage for all its remaining epochs, and its
    checkpoint and metrics would look like results. Each step only keeps its (detached) loss; every
    ``check_every_n_steps`` steps and at the end of each epoch the kept losses are read together, in
    one host-device synchronisation, so a GPU is not stalled on every step and a CPU step pays a list
    append. The error names the first bad batch, its epoch and learning rate.

    Divergence to a *finite* value counts too: a loss that stays above ``diverge_factor`` times the first
    loss of the fit for ``diverge_steps`` consecutive steps (Adam at lr 1e4 takes LeNet-5's loss from 2.3 to
    6e12 in 20 steps without overflowing). ``diverge_steps=0`` turns that check off.
    """

    def __init__(self, check_every_n_steps: int = 1, diverge_factor: float = 100.0, diverge_steps: int = 20) -> None:
        if check_every_n_steps < 1:
            raise ZooError(f"NaNGuard.check_every_n_steps must be >= 1; got {check_every_n_steps}")
        if not diverge_factor > 1:
            raise ZooError(f"NaNGuard.diverge_factor must be > 1; got {diverge_factor}")
        if diverge_steps < 0:
            raise ZooError(f"NaNGuard.diverge_steps must be >= 0 (0: off); got {diverge_steps}")
        self.every = check_every_n_steps
        self.diverge_factor, self.diverge_steps = float(diverge_factor), int(diverge_steps)
        self._window: list[tuple[torch.Tensor, int, int, float | None]] = []  # (loss, epoch, batch, lr)
        self._first: float | None = None  # the first loss of the fit: what "diverged" is measured against
        self._high = 0  # consecutive steps above diverge_factor * first

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._window, self._first, self._high = [], None, 0

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
        values = torch.stack([w[0].float().mean() for w in window]).tolist()  # the one host-device sync
        for value, (_, epoch, batch_idx, lr_value) in zip(values, window):
            lr = f" (learning rate {lr_value:.3g})" if lr_value is not None else ""
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"training diverged: train/loss became {value} at epoch {epoch}, batch {batch_idx}{lr}; "
                    "lower optimizer.lr, or clip gradients with trainer.gradient_clip_val"
                )
            if self._first is None:
                self._first = abs(value)
            self._high = self._high + 1 if value > self.diverge_factor * self._first else 0
            if self.diverge_steps and self._high >= self.diverge_steps:
                raise TrainingDiverged(
                    f"training diverged: train/loss stayed above {self.diverge_factor:g}x its first value "
                    f"({self._first:.4g}) for {self._high} steps, reaching {value:.4g} at epoch {epoch}, "
                    f"batch {batch_idx}{lr}; lower optimizer.lr, or clip gradients with trainer.gradient_clip_val "
                    "(callbacks.nan_guard.diverge_steps=0 turns this check off)"
                )
