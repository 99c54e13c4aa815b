"""Multi-label and binary classification: one sigmoid per label, binary cross-entropy, F1 and mAP.

A softmax says which one class an input belongs to; a sample of ``multi_digits`` holds several digits at once,
so each label gets its own probability ``sigmoid(z_c)`` and its own binary cross-entropy, and a label is
predicted when its probability passes ``threshold``. Binary classification is the one-label case.

Metrics, per epoch over the whole split (so they are exact, not batch averages):

- ``acc``: exact match, every label of a sample right (for one label: accuracy);
- ``f1_<label>``: per label, 2 TP / (2 TP + FP + FN); ``f1_macro`` their mean, ``f1_micro`` the F1 of all
  label decisions pooled (dominated by frequent labels);
- ``map``: mean over labels of the average precision, the area under the precision-recall curve from the
  ranking of the probabilities (threshold-free): ``AP = sum_k P@k * [k-th is positive] / positives``.
  Labels without a positive sample are left out of the mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torchmetrics import CatMetric

from zoo.errors import ZooError
from zoo.models.layers import AuxLogits
from zoo.training.tasks import TASKS, Task


class BCEWithLogitsLoss(nn.BCEWithLogitsLoss):
    """``nn.BCEWithLogitsLoss`` whose ``pos_weight`` (the weight of a label's positives; ``negatives / positives``
    balances them) may be a number or a list from YAML, with the ``threshold`` the task's metrics decide by."""

    def __init__(self, pos_weight: float | Sequence[float] | torch.Tensor | None = None, threshold: float = 0.5,
                 reduction: str = "mean") -> None:
        if isinstance(pos_weight, str):  # "balanced" is resolved from the training labels by zoo.run.loss_config
            raise ZooError(f"loss.pos_weight={pos_weight!r}: a number, a list, or balanced (with multi-label data)")
        w = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32).reshape(-1)
        if w is not None and (w <= 0).any():
            raise ZooError(f"loss.pos_weight must be positive; got {pos_weight}")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
            raise ZooError(f"loss.threshold must lie in (0, 1); got {threshold!r}")
        super().__init__(pos_weight=w, reduction=reduction)
        self.threshold = float(threshold)  # the metrics' decision: a label is predicted above it


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per column of (N, L) ``scores`` and 0/1 ``targets``, the average precision (NaN for a column with no
    positive). Tied scores count as one threshold, as in scikit-learn."""
    out = torch.full((scores.shape[1],), float("nan"), dtype=torch.float64)
    for j in range(scores.shape[1]):
        s, t = scores[:, j].double(), targets[:, j].double()
        if t.sum() == 0:
            continue
        order = torch.argsort(s, descending=True)
        s, t = s[order], t[order]
        tp = torch.cumsum(t, 0)
        last = torch.ones_like(s, dtype=torch.bool)  # the last position of each run of tied scores
        last[:-1] = s[1:] != s[:-1]
        tp, k = tp[last], torch.arange(1, len(s) + 1, dtype=torch.float64)[last]
        recall_step = torch.diff(tp, prepend=torch.zeros(1, dtype=torch.float64)) / tp[-1]
        out[j] = (recall_step * tp / k).sum()
    return out


def multilabel_metrics(probs: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5) -> dict[str, Any]:
    """Exact-match accuracy, per-label F1 (a tensor), micro and macro F1 and mAP of (N, L) probabilities."""
    pred = probs > threshold
    t = targets > 0.5
    tp = (pred & t).sum(0).double()
    fp = (pred & ~t).sum(0).double()
    fn = (~pred & t).sum(0).double()
    denom = 2 * tp + fp + fn
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    micro_denom = (2 * tp + fp + fn).sum()
    ap = average_precision(probs, targets)
    return {
        "acc": (pred == t).all(1).double().mean(),
        "f1": f1,
        "f1_macro": f1.mean(),
        "f1_micro": 2 * tp.sum() / micro_denom if micro_denom > 0 else torch.zeros((), dtype=torch.float64),
        "map": ap[~ap.isnan()].mean() if (~ap.isnan()).any() else torch.tensor(float("nan")),
    }


class MultiLabelTask(Task):
    """Sigmoid outputs and binary cross-entropy for ``multilabel`` data (``multi_digits``, ``binary_digits``).

    The constructor is :class:`zoo.training.tasks.Task`'s; ``loss`` is ``loss=bce`` (``pos_weight``,
    ``threshold``), which the multi-label data configs choose. Logs ``{val,test}/{loss,acc,f1_micro,f1_macro,map}``
    and per label ``f1_<name>``; ``train/acc`` is the exact-match rate.
    """

    count_correct = True
    default_loss = BCEWithLogitsLoss
    eval_metrics = ("loss", "acc", "f1_micro", "f1_macro", "map")

    @staticmethod
    def label_names_of(facts: dict[str, Any], num_labels: int) -> list[str]:
        """Label names as the per-label metrics spell them (``f1_<name>``, spaces as underscores)."""
        return [str(n).replace(" ", "_") for n in (facts.get("class_names") or range(num_labels))]

    @classmethod
    def eval_metric_names(cls, facts: dict[str, Any]) -> list[str]:
        names = cls.label_names_of(facts, int(facts.get("num_classes") or 0))
        return [*cls.eval_metrics, *([f"f1_{n}" for n in names] if len(names) > 1 else [])]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.criterion, BCEWithLogitsLoss):  # refused, not replaced: the data configs choose bce
            raise ZooError(f"multi-label and binary data take loss=bce (sigmoid outputs); got loss "
                           f"{type(self.criterion).__name__}")
        self.threshold = self.criterion.threshold
        self.label_names = self.label_names_of(self.facts, self.hparams.num_classes)
        self.probs = nn.ModuleDict({s: CatMetric() for s in ("val", "test")})
        self.targets = nn.ModuleDict({s: CatMetric() for s in ("val", "test")})

    def _loss(self, out: Any, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(out, AuxLogits):  # auxiliary heads count in training, with their paper weights
            loss = self.criterion(out.logits, y) + sum(w * self.criterion(a, y) for a, w in zip(out.aux, out.weights))
            return loss, out.logits
        return self.criterion(out, y), out

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch  # y: N x labels of 0/1
        loss, logits = self._loss(self(x), y)
        exact = ((logits.detach() > 0) == (y > 0.5)).all(1).sum()  # sigmoid(z) > 1/2 <=> z > 0
        self.log_train_loss(loss, len(y), exact)
        return loss

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        self.log(f"{stage}/loss", self.criterion(logits, y), on_epoch=True, prog_bar=stage == "val", sync_dist=True)
        self.probs[stage].update(torch.sigmoid(logits.float()))
        self.targets[stage].update(y.float())
        return logits

    def _log_metrics(self, stage: str) -> None:
        if not self.probs[stage].update_called:
            return
        probs, targets = self.probs[stage].compute(), self.targets[stage].compute()  # whole split, all processes
        self.probs[stage].reset()
        self.targets[stage].reset()
        m = multilabel_metrics(probs.reshape(len(probs), -1), targets.reshape(len(targets), -1), self.threshold)
        for key in self.eval_metrics[1:]:  # loss is logged per batch in _eval_step
            self.log(f"{stage}/{key}", m[key].float(), prog_bar=stage == "val" and key == "acc")
        if len(self.label_names) > 1:
            for name, value in zip(self.label_names, m["f1"]):
                self.log(f"{stage}/f1_{name}", value.float())

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")


TASKS["multilabel"] = MultiLabelTask
