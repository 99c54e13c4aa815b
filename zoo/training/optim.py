"""Optimizers and learning-rate schedules from config dictionaries, the same way for every task.

``build_optimizer`` turns an ``optimizer`` config (a ``_partial_`` ``torch.optim`` class plus keys) into an
optimizer whose parameter groups put weight decay on weights only: biases and normalisation parameters
(every tensor with fewer than two dimensions) are not pulled towards zero, as in Goyal et al. 2017 and
every modern recipe. ``backbone_lr_scale`` gives the backbone (everything but the classifier) a smaller
learning rate for fine-tuning.

``build_scheduler`` turns a ``scheduler`` config into Lightning's scheduler dictionaries. ``interval`` says
whether it steps per optimizer step or per epoch, ``monitor`` what ReduceLROnPlateau watches, and
``warmup_steps`` / ``warmup_epochs`` add a linear warmup that multiplies whatever the schedule says. The
warmup is a second, per-step scheduler on the same optimizer: torch's schedulers (except OneCycleLR, which
has its own warmup) update the learning rate multiplicatively, so the two compose into
``lr = base_lr * warmup(step) * schedule(epoch or step)``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch import nn

from zoo.errors import ZooError

# Keys of an optimizer config that are ours, not the torch optimizer's.
_OPT_KEYS = ("_partial_", "backbone_lr_scale")
# Keys of a scheduler config that are ours (or Lightning's), not the torch scheduler's.
_SCHED_KEYS = ("_partial_", "interval", "monitor", "frequency", "warmup_steps", "warmup_epochs", "warmup_start_factor")
# What a config of each group may hold beyond its target's arguments (zoo.checkpoint checks stored options)
OWN_KEYS = {"optimizer": set(_OPT_KEYS), "scheduler": set(_SCHED_KEYS)}
# Scheduler arguments that mean "the length of the run": filled in from the trainer when left null.
_LENGTH_ARGS = {"OneCycleLR": "total_steps", "PolynomialLR": "total_iters", "CosineAnnealingLR": "T_max"}


def classifier_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters of ``model``'s classifier: those that ``reset_classifier`` replaces.

    Every zoo model has ``reset_classifier(n)``; calling it on two copies with different class counts and
    seeing which parameters differ in shape names the head without a per-family list of attribute names.
    The copies are shells on the meta device (every tensor replaced by a meta tensor of its shape), so no
    weight is copied. The one way zoo finds a classifier: fine-tuning (``zoo.training.finetune``) uses it too.
    """
    if not hasattr(model, "reset_classifier"):
        raise ZooError(f"{type(model).__name__} has no reset_classifier(); backbone_lr_scale needs one")
    shapes = []
    for n in (3, 5):
        memo: dict[int, Any] = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad)
                                for p in model.parameters()}
        memo.update({id(b): torch.empty_like(b, device="meta") for b in model.buffers()})
        probe = copy.deepcopy(model, memo)
        with torch.device("meta"):
            probe.reset_classifier(n)
        shapes.append({name: p.shape for name, p in probe.named_parameters()})
    changed = {name for name, shape in shapes[0].items() if shapes[1].get(name) != shape}
    if not changed:
        raise ZooError(f"could not find the classifier of {type(model).__name__}")
    return changed


def param_groups(
    model: nn.Module, weight_decay: float, lr: float, backbone_lr_scale: float = 1.0
) -> list[dict[str, Any]]:
    """Parameter groups: decayed weights (ndim >= 2) vs. biases and norm parameters (no decay).

    With ``backbone_lr_scale != 1`` each of the two is split again into classifier and backbone, the
    backbone's learning rate being ``lr * backbone_lr_scale``. Empty groups are left out; every group
    has a ``name`` (shown by Lightning's LearningRateMonitor when there is more than one).
    """
    head = classifier_parameter_names(model) if backbone_lr_scale != 1.0 else set()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = (p.ndim >= 2, name in head or not head)
        groups.setdefault(key, []).append(p)
    out = []
    for (decay, is_head), params in sorted(groups.items(), key=lambda kv: (not kv[0][1], not kv[0][0])):
        group = {"params": params, "weight_decay": weight_decay if decay else 0.0}
        group["name"] = ("" if not head else "head_" if is_head else "backbone_") + ("decay" if decay else "no_decay")
        if head and not is_head:
            group["lr"] = lr * backbone_lr_scale
        out.append(group)
    if not out:
        raise ZooError("the model has no trainable parameters")
    return out


def build_optimizer(cfg: dict[str, Any], model: nn.Module) -> torch.optim.Optimizer:
    """An optimizer from an ``optimizer`` config (``_target_`` + torch keyword arguments) for ``model``."""
    cfg = dict(cfg)
    scale = float(cfg.get("backbone_lr_scale", 1.0) or 1.0)
    opt_cfg = {k: v for k, v in cfg.items() if k not in _OPT_KEYS}
    if "_target_" not in opt_cfg:
        raise ZooError("optimizer config needs _target_ (e.g. optimizer=adam)")
    lr = opt_cfg.get("lr", 1e-3)
    groups = param_groups(model, float(opt_cfg.get("weight_decay", 0.0) or 0.0), lr, scale)
    try:
        return instantiate(opt_cfg, params=groups, _convert_="all")
    except (InstantiationException, TypeError, ValueError) as e:  # an argument it does not take, a negative lr
        raise ZooError(f"optimizer {opt_cfg['_target_']}: {e.__cause__ or e}") from None


def _steps_per_epoch(trainer: Any) -> int:
    epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
    return max(1, math.ceil(trainer.estimated_stepping_batches / epochs))


def build_scheduler(
    cfg: dict[str, Any] | None, optimizer: torch.optim.Optimizer, trainer: Any = None
) -> list[dict[str, Any]]:
    """Lightning ``lr_scheduler`` configs (possibly empty) for a ``scheduler`` config and ``optimizer``.

    ``trainer`` (when given) fills a null run length: OneCycleLR's ``total_steps`` from
    ``trainer.estimated_stepping_batches``, cosine's ``T_max`` and polynomial's ``total_iters`` from the
    epochs (or steps, for ``interval: step``), and converts ``warmup_epochs`` into optimizer steps.
    """
    cfg = dict(cfg or {})
    interval = cfg.get("interval", "epoch")
    if interval not in ("epoch", "step"):
        raise ZooError(f"scheduler.interval must be 'epoch' or 'step'; got {interval!r}")
    monitor = cfg.get("monitor", "val/loss")
    warmup = int(cfg.get("warmup_steps") or 0)
    if cfg.get("warmup_epochs"):
        if trainer is None:
            raise ZooError("scheduler.warmup_epochs needs the trainer to know the steps per epoch")
        warmup += int(round(float(cfg["warmup_epochs"]) * _steps_per_epoch(trainer)))
    start_factor = float(cfg.get("warmup_start_factor", 0.01))

    configs: list[dict[str, Any]] = []
    sched_cfg = {k: v for k, v in cfg.items() if k not in _SCHED_KEYS}
    target = sched_cfg.get("_target_")
    if target:
        cls_name = str(target).rsplit(".", 1)[-1]
        length = _LENGTH_ARGS.get(cls_name)
        if length and sched_cfg.get(length) is None:
            if trainer is None:
                raise ZooError(f"scheduler {cls_name}.{length} is null and there is no trainer to take it from")
            steps = int(trainer.estimated_stepping_batches)
            sched_cfg[length] = steps if interval == "step" or cls_name == "OneCycleLR" else trainer.max_epochs
        if cls_name == "OneCycleLR":
            if interval != "step":
                raise ZooError("scheduler one_cycle steps per optimizer step: interval must be 'step'")
            if warmup:
                raise ZooError("one_cycle has its own warmup (pct_start); drop warmup_steps/warmup_epochs")
        try:
            scheduler = instantiate(sched_cfg, optimizer=optimizer, _convert_="all")
        except (TypeError, ValueError) as e:
            raise ZooError(f"scheduler {target}: {e}") from None
        configs.append({"scheduler": scheduler, "interval": interval, "monitor": monitor, "name": "train/lr"})
    if warmup:
        if not 0.0 < start_factor <= 1.0:
            raise ZooError(f"scheduler.warmup_start_factor must be in (0, 1]; got {start_factor}")
        ramp = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=start_factor, total_iters=warmup)
        configs.append({"scheduler": ramp, "interval": "step", "name": "train/lr"})
    if not configs:  # scheduler=none: a constant one, so the learning rate is still logged as train/lr
        constant = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
        configs.append({"scheduler": constant, "interval": "epoch", "name": "train/lr"})
    return configs


def configure_optimizers(module: Any) -> Any:
    """``LightningModule.configure_optimizers`` for any task with ``hparams.optimizer``/``scheduler``.

    Parameters come from ``module.net`` when it has one (the bare network, so ``backbone_lr_scale``
    finds its classifier), otherwise from the module itself.
    """
    net = getattr(module, "net", module)
    optimizer = build_optimizer(module.hparams.optimizer, net)
    trainer = getattr(module, "_trainer", None)
    schedulers = build_scheduler(module.hparams.get("scheduler"), optimizer, trainer)
    return [optimizer], schedulers


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of absolute values of the weights (ndim >= 2), the same parameters weight decay acts on."""
    weights = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    if not weights:
        return torch.zeros(())
    return torch.stack([p.abs().sum() for p in weights]).sum()
