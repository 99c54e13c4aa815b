"""Classification losses that a config can build: class weights as lists, focal loss, soft targets.

Every loss takes logits ``(N, C)`` (or ``(N, C, d...)`` like ``nn.CrossEntropyLoss``) and targets that are
either class indices ``(N,)`` or probabilities ``(N, C)`` — mixup and cutmix produce the latter. Regression
losses are torch's own (``configs/loss/mse.yaml``, ``l1.yaml``, ``smooth_l1.yaml``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ZooError


def _weight_tensor(weight: Sequence[float] | torch.Tensor | None) -> torch.Tensor | None:
    if weight is None:
        return None
    w = torch.as_tensor(weight, dtype=torch.float32)
    if w.ndim != 1 or (w < 0).any():
        raise ZooError(f"loss.weight must be a list of non-negative per-class weights; got {list(weight)}")
    return w


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """``nn.CrossEntropyLoss`` whose ``weight`` may be a plain list (one weight per class) from YAML.

    Label smoothing (Szegedy et al. 2016) and soft targets are torch's own.
    """

    def __init__(
        self,
        weight: Sequence[float] | torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight=_weight_tensor(weight), ignore_index=ignore_index, reduction=reduction,
                         label_smoothing=label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.weight is not None and self.weight.numel() != logits.shape[1]:
            raise ZooError(f"loss.weight has {self.weight.numel()} entries but the model has {logits.shape[1]} classes")
        return super().forward(logits, target)


class FocalLoss(nn.Module):
    """Focal loss: ``-alpha_t (1 - p_t)^gamma log p_t``.

    T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollár (2017). "Focal Loss for Dense Object Detection".
    The factor ``(1 - p_t)^gamma`` shrinks the loss of examples the model already gets right, so the
    many easy ones do not drown the few hard ones; ``gamma = 0`` is cross-entropy. ``weight`` gives
    per-class ``alpha`` (as in ``nn.CrossEntropyLoss``; the mean is weighted the same way). For soft
    targets ``t`` the loss is ``-sum_c t_c (1 - p_c)^gamma log p_c``.
    """

    def __init__(
        self, gamma: float = 2.0, weight: Sequence[float] | torch.Tensor | None = None, reduction: str = "mean"
    ) -> None:
        super().__init__()
        if gamma < 0:
            raise ZooError(f"focal loss gamma must be >= 0; got {gamma}")
        if reduction not in ("mean", "sum", "none"):
            raise ZooError(f"loss.reduction must be mean, sum or none; got {reduction!r}")
        self.gamma = float(gamma)
        self.reduction = reduction
        self.register_buffer("weight", _weight_tensor(weight))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=1)  # N x C x ...
        focus = (1 - logp.exp()).pow(self.gamma) if self.gamma else 1.0
        shape = [1, -1] + [1] * (logits.ndim - 2)
        w = self.weight.view(shape) if self.weight is not None else None
        if target.is_floating_point():  # soft targets N x C x ...
            per_class = -target * focus * logp
            if w is not None:
                per_class = per_class * w
            loss = per_class.sum(1)
            norm = None
        else:
            idx = target.unsqueeze(1)
            loss = -(focus * logp).gather(1, idx).squeeze(1) if self.gamma else -logp.gather(1, idx).squeeze(1)
            norm = None
            if w is not None:
                wt = self.weight[target]
                loss, norm = loss * wt, wt.sum()
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        return loss.sum() / norm if norm is not None else loss.mean()


class SoftTargetCrossEntropy(nn.Module):
    """``mean_n -sum_c t_nc log softmax(z_n)_c`` for probability targets (mixup, cutmix; timm's name).

    Hard class indices are accepted too and turned into one-hot targets, so validation batches work.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=1)
        if not target.is_floating_point():
            return F.nll_loss(logp, target)
        return -(target * logp).sum(1).mean()


class SoftmaxMSELoss(nn.Module):
    """Squared error between the softmax probabilities and the one-hot target, summed over classes and averaged
    over samples (the Brier score): classification trained with MSE, to compare with cross-entropy.

    Its gradient with respect to the logits carries the softmax's Jacobian, which vanishes as a wrong
    prediction saturates (p_y -> 0), where cross-entropy's ``p - t`` stays large: the usual argument for
    cross-entropy. Takes class indices or probability targets.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = F.softmax(logits.float(), dim=1)
        t = target.float() if target.is_floating_point() else F.one_hot(target, p.shape[1]).float()
        return (p - t).pow(2).sum(1).mean()
