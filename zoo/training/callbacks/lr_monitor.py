"""The learning rate in TensorBoard: one ``train/lr`` for the weight-decay parameter groups of zoo's optimizers."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import LearningRateMonitor as _LightningLRMonitor


class LearningRateMonitor(_LightningLRMonitor):
    """Lightning's monitor, with one ``train/lr`` for parameter groups that differ only in weight decay.

    zoo.training.optim splits the parameters into ``decay``/``no_decay`` groups (and ``head_``/``backbone_`` ones with
    ``optimizer.backbone_lr_scale``); Lightning would log ``train/lr/decay`` and ``train/lr/no_decay`` with
    the same value. Here they are ``train/lr`` (the classifier's rate) and ``train/lr_backbone``.
    """

    _SAME = ("decay", "no_decay", "head_decay", "head_no_decay")
    _BACKBONE = ("backbone_decay", "backbone_no_decay")

    def _extract_stats(self, trainer: pl.Trainer, interval: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, value in super()._extract_stats(trainer, interval).items():
            base, _, group = key.rpartition("/")
            group, dash, stat = group.partition("-")  # e.g. "decay-momentum"
            suffix = dash + stat
            if group in self._SAME:
                out[base + suffix] = value
            elif group in self._BACKBONE:
                out[base + "_backbone" + suffix] = value
            else:
                out[key] = value
        return out


