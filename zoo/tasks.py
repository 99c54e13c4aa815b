"""LightningModules: the one place that turns (network, loss, optimizer, schedule) into training.

A task is built from plain config dictionaries, and saves them as its hyper-parameters, so a
checkpoint can rebuild the network and its data without the command line that trained it.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from zoo.errors import ZooError
from zoo.models.layers import AuxLogits
from zoo.registry import build_network


class ClassificationTask(pl.LightningModule):
    """Image (or sequence) classification: cross-entropy, top-1 and top-5 accuracy.

    Arguments are plain dictionaries (Hydra configs converted to containers):
    ``model`` (``name`` + kwargs), ``optimizer`` (a ``_partial_`` optimizer), ``scheduler`` (a
    ``_partial_`` LR scheduler with optional ``interval``/``monitor`` keys, or None), ``loss`` (a
    loss module), and ``data`` (the datamodule config and facts, kept for rebuilding).
    """

    def __init__(
        self,
        model: dict[str, Any],
        num_classes: int,
        in_channels: int,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        loss: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        image_size = (data or {}).get("facts", {}).get("input_shape", [None])[-1]
        self.net = build_network(model, num_classes, in_channels, image_size)
        self.criterion = instantiate(loss) if loss else nn.CrossEntropyLoss()
        top5 = min(5, num_classes)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch  # y: class indices (N,), or soft targets (N, num_classes) from mixup/cutmix
        out = self(x)
        if isinstance(out, AuxLogits):  # auxiliary classifiers count in training only, with their paper weights
            logits = out.logits
            loss = self.criterion(logits, y) + sum(w * self.criterion(a, y) for a, w in zip(out.aux, out.weights))
        else:
            logits = out
            loss = self.criterion(logits, y)
        self.train_acc.update(logits.detach(), y.argmax(1) if y.ndim == 2 else y)
        # on_step values reach the logger every `log_every_n_steps`; no per-step .item() here.
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        x, y = batch
        logits = self(x)
        acc, acc5 = (self.val_acc, self.val_acc5) if stage == "val" else (self.test_acc, self.test_acc5)
        acc.update(logits, y)
        acc5.update(logits, y)
        self.log(f"{stage}/loss", self.criterion(logits, y), on_epoch=True, prog_bar=stage == "val", sync_dist=True)
        self.log(f"{stage}/acc", acc, on_epoch=True, prog_bar=stage == "val")
        self.log(f"{stage}/acc_top5", acc5, on_epoch=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self) -> Any:
        # `_partial_` in the configs documents that params/optimizer come later; they come here.
        opt_cfg = {k: v for k, v in self.hparams.optimizer.items() if k != "_partial_"}
        optimizer = instantiate(opt_cfg, params=[p for p in self.parameters() if p.requires_grad])
        if not self.hparams.scheduler:
            return optimizer
        sched_cfg = {k: v for k, v in self.hparams.scheduler.items() if k != "_partial_"}
        interval = sched_cfg.pop("interval", "epoch")
        monitor = sched_cfg.pop("monitor", "val/loss")
        scheduler = instantiate(sched_cfg, optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval, "monitor": monitor, "name": "train/lr"},
        }


TASKS: dict[str, type[pl.LightningModule]] = {"classification": ClassificationTask}


def task_class(kind: str) -> type[pl.LightningModule]:
    """The LightningModule class for a datamodule's ``task`` kind."""
    if kind not in TASKS:
        raise ZooError(f"no task for data of kind {kind!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[kind]
