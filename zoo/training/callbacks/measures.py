"""Numbers the README's measured answers need, logged as test metrics so they land in metrics.json.

- :class:`PerClassRecall`: ``test/recall_<class>``. Top-1 accuracy hides what an imbalanced training split
  costs the rare classes; the recall of each class (the fraction of its test samples predicted as it) shows
  it. Counted from the logits ``test_step`` returns, for batches with integer labels; others are skipped.
- :class:`WeightSparsity`: ``test/near_zero_weights``, the fraction of weights (tensors of two or more
  dimensions, what L1 and weight decay act on) with ``|w| < threshold``: how sparse L1 makes a network.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback


class PerClassRecall(Callback):
    """Logs ``test/recall_<name>`` per class and ``test/recall_mean`` (the balanced accuracy) after testing."""

    def __init__(self) -> None:
        self.hits: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.hits = self.counts = None

    @torch.no_grad()
    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if not isinstance(outputs, torch.Tensor) or outputs.ndim != 2 or not isinstance(batch, (tuple, list)):
            return
        y = batch[1]
        if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.is_floating_point():
            return
        c = outputs.shape[1]
        hits = torch.bincount(y[outputs.argmax(1) == y], minlength=c)
        counts = torch.bincount(y, minlength=c)
        self.hits = hits if self.hits is None else self.hits + hits
        self.counts = counts if self.counts is None else self.counts + counts

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.hits is None:
            return
        hits, counts = pl_module.all_gather(self.hits), pl_module.all_gather(self.counts)
        if hits.ndim == 2:  # one row per process
            hits, counts = hits.sum(0), counts.sum(0)
        facts = (pl_module.hparams.get("data") or {}).get("facts", {}) if hasattr(pl_module, "hparams") else {}
        names = [str(n) for n in facts.get("class_names") or range(len(hits))]
        present = counts > 0
        recall = hits.float() / counts.clamp(min=1)
        for name, r, ok in zip(names, recall, present):
            if ok:
                pl_module.log(f"test/recall_{name}", r)
        pl_module.log("test/recall_mean", recall[present].mean())


class WeightSparsity(Callback):
    """Logs ``test/near_zero_weights``: the fraction of weights (ndim >= 2) of ``pl_module.net`` below
    ``threshold`` in absolute value, for the weights being tested."""

    def __init__(self, threshold: float = 1e-3) -> None:
        self.threshold = float(threshold)

    @torch.no_grad()
    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        net = getattr(pl_module, "net", pl_module)
        weights = [p.detach().flatten() for p in net.parameters() if p.ndim >= 2]
        if weights:
            w = torch.cat(weights)
            pl_module.log("test/near_zero_weights", (w.abs() < self.threshold).float().mean())
