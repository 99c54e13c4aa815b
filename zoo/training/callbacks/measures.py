"""Numbers the README's measured answers need, logged as test metrics so they land in metrics.json.

- :class:`PerClassRecall`: ``test/recall_<class>``. Top-1 accuracy hides what an imbalanced training split
  costs the rare classes; the recall of each class (the fraction of its test samples predicted as it) shows
  it. Counted from the logits ``test_step`` returns, for batches with integer labels (others are skipped), as a
  confusion matrix (:func:`confusion_counts`, :func:`recall_per_class`: the count TensorBoardDiagnostics'
  per-class figures read too).
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


def labelled_logits(outputs: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The logits (N x classes) ``test_step`` returned and the batch's integer labels (N), or None for a batch
    without them (regression, sequences, soft or multi-label targets): what per-class counts are taken from."""
    if not isinstance(outputs, torch.Tensor) or outputs.ndim != 2 or not isinstance(batch, (tuple, list)):
        return None
    y = batch[1]
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.is_floating_point():
        return None
    return outputs, y


def confusion_counts(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """classes x classes counts of one batch: rows the true class, columns the prediction (the argmax of the
    logits, as ``test/acc`` counts it; sklearn's layout). Summed over batches (and processes), it is the one
    count that per-class recall (PerClassRecall) and the confusion figures (TensorBoardDiagnostics) are read from."""
    c = logits.shape[1]
    return torch.bincount(y * c + logits.argmax(1), minlength=c * c).view(c, c)


def recall_per_class(cm: torch.Tensor) -> torch.Tensor:
    """Each class's recall, the fraction of its samples predicted as it: the diagonal over the row sums (0 for a
    class without samples), as float32 for integer counts or in ``cm``'s floating dtype."""
    return cm.diagonal() / cm.sum(1).clamp(min=1)


class PerClassRecall(Callback):
    """Logs ``test/recall_<name>`` per class and ``test/recall_mean`` (the balanced accuracy) after testing."""

    def __init__(self) -> None:
        self.cm: torch.Tensor | None = None

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.cm = None

    @torch.no_grad()
    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        labelled = labelled_logits(outputs, batch)
        if labelled is not None:
            counts = confusion_counts(*labelled)
            self.cm = counts if self.cm is None else self.cm + counts

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.cm is None:
            return
        cm = pl_module.all_gather(self.cm)
        if cm.ndim == 3:  # one matrix per process
            cm = cm.sum(0)
        facts = getattr(pl_module, "facts", {})  # zoo.training.tasks.Task: the data facts it was built with
        names = [str(n) for n in facts.get("class_names") or range(len(cm))]
        present = cm.sum(1) > 0
        recall = recall_per_class(cm)
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
