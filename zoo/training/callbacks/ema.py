"""The exponential moving average of the weights (Polyak & Juditsky 1992), used for validation and saved."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.trainer.states import TrainerFn

from zoo.errors import ZooError


class EMA(Callback):
    """Exponential moving average of the weights (Polyak & Juditsky 1992), used for validation and saved.

    ``decay`` is the weight of the past; with ``warmup`` the decay of update ``n`` is
    ``min(decay, (1 + n) / (10 + n))`` (TensorFlow's num_updates rule), so early averages are not dominated by
    the random initialisation. Every floating-point tensor of the module's state (parameters and BatchNorm
    running statistics) is averaged.

    Where the weights live: during fitting the module trains the raw weights; validation runs with the
    average swapped in. Checkpoints hold the average in ``state_dict`` (so ``best.ckpt``, ``eval.py`` and
    ``load_pretrained`` all get the weights that were validated) and the raw weights in this callback's
    state; resuming puts each back where it was, so a resumed run continues exactly. After fitting the module
    keeps the average.
    """

    def __init__(self, decay: float = 0.999, warmup: bool = True, every_n_steps: int = 1) -> None:
        if not 0.0 <= decay < 1.0:
            raise ZooError(f"EMA decay must be in [0, 1); got {decay}")
        if every_n_steps < 1:
            raise ZooError(f"EMA every_n_steps must be >= 1; got {every_n_steps}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.every_n_steps = int(every_n_steps)
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {}
        self._live: list[torch.Tensor] = []
        self._backup: dict[str, torch.Tensor] | None = None
        self._loaded: dict[str, Any] | None = None
        self._last_step = -1

    # -- the average ------------------------------------------------------------------------------
    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @staticmethod
    def _float_state(pl_module: pl.LightningModule) -> dict[str, torch.Tensor]:
        return {k: v for k, v in pl_module.state_dict().items() if v.is_floating_point()}

    def _swap_in(self, pl_module: pl.LightningModule) -> None:
        """Put the average into the module, keeping the raw weights aside."""
        if self._backup is not None or not self.shadow:
            return
        state = self._float_state(pl_module)
        self._backup = {k: state[k].detach().clone() for k in self.shadow}
        with torch.no_grad():
            for k, v in self.shadow.items():
                state[k].copy_(v)

    def _swap_out(self, pl_module: pl.LightningModule) -> None:
        if self._backup is None:
            return
        state = self._float_state(pl_module)
        with torch.no_grad():
            for k, v in self._backup.items():
                state[k].copy_(v)
        self._backup = None

    # -- Lightning hooks ----------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state = self._float_state(pl_module)
        if self._loaded is not None:  # resumed: the module holds the average, the raw weights are in our state
            self.shadow = {k: state[k].detach().clone() for k in state}
            raw = self._loaded.get("raw") or {}
            with torch.no_grad():
                for k, v in raw.items():
                    if k in state:
                        state[k].copy_(v.to(state[k].device))
            self.num_updates = int(self._loaded.get("num_updates", 0))
            self._loaded = None
        elif not self.shadow:
            self.shadow = {k: v.detach().clone() for k, v in state.items()}
        self._live = [state[k] for k in self.shadow]  # share storage with the parameters and buffers
        self._last_step = trainer.global_step

    @torch.no_grad()
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step == self._last_step:  # no optimizer step in this batch (gradient accumulation)
            return
        self._last_step = step
        if step % self.every_n_steps:
            return
        d = self.current_decay()
        torch._foreach_lerp_(list(self.shadow.values()), self._live, 1.0 - d)
        self.num_updates += 1

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # outside fit, the module already holds what was loaded
            self._swap_in(pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            self._swap_out(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._swap_in(pl_module)  # after fit the module is the average, like the checkpoints

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if not self.shadow:
            return
        sd = checkpoint["state_dict"]
        raw = self._backup if self._backup is not None else {k: sd[k] for k in self.shadow if k in sd}
        for k, v in self.shadow.items():
            if k in sd:
                sd[k] = v.detach().clone()
        checkpoint.setdefault("callbacks", {}).setdefault(self.state_key, {})["raw"] = {
            k: v.detach().cpu().clone() for k, v in raw.items()
        }

    def state_dict(self) -> dict[str, Any]:
        # the raw weights are added by on_save_checkpoint, which sees the checkpoint's state_dict
        return {"decay": self.decay, "num_updates": self.num_updates}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = dict(state_dict)
        self.num_updates = int(state_dict.get("num_updates", 0))


