"""Numbers the README's measured answers need, logged as test metrics so they land in metrics.json.

- :class:`PerClassRecall`: ``test/recall_<class>``. Top-1 accuracy hides what an imbalanced training split
  costs the rare classes; the recall of each class (the fraction of its test samples predicted as it) shows
  it. Counted from the logits ``test_step`` returns, for batches with integer labels; others are skipped.
- :class:`WeightSparsity`: ``test/near_zero_weights``, the fraction of weights (tensors of two or more
  dimensions, what L1 and weight decay act on) with ``|w| < threshold``: how sparse L1 makes a network.
- :class:`VarianceShift`: ``test/variance_shift``, per batch-norm layer the variance of its input on the test
  split (eval mode) over the running variance it normalises by, averaged over channels and layers; 1 means
  no shift. Li, Chen, Hu & Yang (2019), "Understanding the Disharmony between Dropout and Batch
  Normalization by Variance Shift": dropout before a BN layer makes training variances larger than eval ones.
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


class VarianceShift(Callback):
    """Logs ``test/variance_shift``: mean over BatchNorm layers and channels of test-time input variance /
    ``running_var`` (what Li et al. 2019 call the variance shift; below 1 when dropout inflated training's)."""

    def __init__(self) -> None:
        self.sums: dict[str, list[torch.Tensor]] = {}
        self.handles: list[Any] = []

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.sums = {}
        for name, m in pl_module.named_modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_var is not None:
                self.handles.append(m.register_forward_pre_hook(self._hook(name)))

    def _hook(self, name: str) -> Any:
        def hook(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach().float().transpose(0, 1).reshape(args[0].shape[1], -1)  # C x (N * H * W)
            s = self.sums.setdefault(name, [torch.zeros((), device=x.device), torch.zeros_like(x[:, 0]),
                                            torch.zeros_like(x[:, 0])])
            s[0] += x.shape[1]
            s[1] += x.sum(1)
            s[2] += x.pow(2).sum(1)
        return hook

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
        modules = dict(pl_module.named_modules())
        ratios = []
        for name, (n, total, squares) in self.sums.items():
            mean = total / n
            var = (squares / n - mean.pow(2)).clamp(min=0) * n / (n - 1)
            ratios.append((var / modules[name].running_var.clamp(min=1e-12)).mean())
        if ratios:
            pl_module.log("test/variance_shift", torch.stack(ratios).mean())
