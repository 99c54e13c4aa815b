"""Training from a composed Hydra config: the work behind ``train.py``.

``train(cfg)``: datamodule -> network (classes and channels from the data) -> task -> Trainer -> fit ->
validate and test the best checkpoint -> ``metrics.json``. The task carries the checkpoint record
(zoo.checkpoint) that every checkpoint stores. Evaluation from a checkpoint alone is zoo.evaluate; it
builds its Trainer with :func:`build_trainer`, as training does.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning_fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf, open_dict

from zoo.checkpoint import Record, load_record
from zoo.cli import check_config
from zoo.errors import ZooError, causes
from zoo.init import init_weights
from zoo.provenance import record as record_provenance
from zoo.registry import options_for_weights
from zoo.training.callbacks.progress import quiet_lightning
from zoo.training.callbacks.resume_state import ResumeState, SafeCheckpointIO, check_callback_states
from zoo.training.tasks import task_class
from zoo.weights import load_checkpoint, state_dict_of


def _container(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def output_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


def loss_config(cfg: DictConfig, dm: Any) -> Any:
    """``cfg.loss`` as a dict, ``weight: balanced`` replaced by the data's class weights and ``pos_weight: balanced``
    by its labels' negatives / positives (both from the training labels)."""
    loss = _container(cfg.get("loss"))
    if isinstance(loss, dict) and loss.get("weight") == "balanced":
        if not hasattr(dm, "class_weights"):
            raise ZooError(f"loss.weight=balanced needs class labels; data {getattr(dm, 'name', dm)!r} has none")
        loss = {**loss, "weight": [round(float(w), 6) for w in dm.class_weights()]}
    if isinstance(loss, dict) and loss.get("pos_weight") == "balanced":  # multi-label: negatives / positives
        freq = dm.facts().get("label_frequency")
        if not freq:
            raise ZooError("loss.pos_weight=balanced needs the data's label frequencies, which this data lacks")
        loss = {**loss, "pos_weight": [round((1 - f) / f, 6) if f > 0 else 1.0 for f in freq]}
    return loss


def build_task(cfg: DictConfig, dm: Any) -> pl.LightningModule:
    """The LightningModule for ``dm``'s kind of task, and the record its checkpoints store."""
    hp = {
        "model": _container(cfg.model),
        "num_classes": dm.num_classes,
        "in_channels": getattr(dm, "in_channels", dm.input_shape[0]),  # sequences: features per step or vocabulary
        "optimizer": _container(cfg.optimizer),
        "scheduler": _container(cfg.get("scheduler")),
        "loss": loss_config(cfg, dm),
        "data": {"config": _container(cfg.data), "facts": dm.facts()},
        **({"l1": float(cfg.l1)} if cfg.get("l1") else {}),  # L1 penalty on weights (ClassificationTask)
    }
    record = Record.from_hparams(hp, "the training config", trusted=True)  # names only, checked like a file's
    task = task_class(dm.task)(**hp)
    task.record = record
    if len(dm.input_shape) == 3:  # images: one sample lets the model summary count multiply-accumulates
        task.example_input_array = torch.zeros(1, *dm.input_shape)
    return task


def trainer_config(cfg: DictConfig) -> DictConfig:
    """``cfg.trainer`` without the keys that are ours, not the Trainer's (``channels_last``)."""
    trainer_cfg = cfg.trainer.copy()
    with open_dict(trainer_cfg):
        trainer_cfg.pop("channels_last", None)
    return trainer_cfg


def build_trainer(cfg: DictConfig, training: bool = True, **extra: Any) -> pl.Trainer:
    """The Trainer of ``cfg.trainer`` with zoo's checkpoint I/O; its settings' mistakes are one line.

    ``training``: the callbacks and loggers of ``cfg`` and the resume state; evaluation (zoo.evaluate)
    passes False and its own ``logger``/checkpointing settings in ``extra``.
    """
    quiet_lightning()
    callbacks = []
    if training:
        callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]
        callbacks.append(ResumeState(str(output_dir(cfg))))  # RNG states etc., so a resume is exact
        loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c and "_target_" in c]
        extra.setdefault("logger", loggers or False)
    extra.setdefault("plugins", [SafeCheckpointIO()])  # every Lightning load is weights-only, saves are atomic
    try:
        return instantiate(trainer_config(cfg), callbacks=callbacks, **extra)
    except Exception as e:  # Lightning refuses the settings (no GPU for trainer=gpu, fsdp on a CPU, ...)
        *_, cause = causes(e)  # the innermost: what Lightning raised
        if not isinstance(cause, (MisconfigurationException, ValueError)):
            raise
        hint = ""
        if not torch.cuda.is_available() and cfg.trainer.get("accelerator") in ("gpu", "cuda"):
            hint = "; no CUDA GPU is visible here: trainer=cpu and trainer=ddp_cpu run on CPUs"
        message = " ".join(str(cause).split())  # one line
        raise ZooError(f"the trainer settings do not work here: {message}{hint}") from e


def numbers(metrics: dict[str, Any], prefixes: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if k.startswith(prefixes):
            out[k] = float(v.item() if isinstance(v, torch.Tensor) else v)
    return dict(sorted(out.items()))


def _hparams_for_tensorboard(cfg: DictConfig) -> dict[str, Any]:
    """A flat dict of the settings worth comparing across runs in TensorBoard's HParams tab."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k not in ("_partial_", "callbacks", "logger", "paths", "hydra"):
                    walk(f"{prefix}{k}." if prefix or k else k, v)
        elif isinstance(node, (int, float, str, bool)):
            flat[prefix.rstrip(".")] = node

    groups = ("model", "data", "optimizer", "scheduler", "loss", "init", "l1", "seed")
    walk("", {k: _container(cfg.get(k)) for k in groups})
    flat["trainer.max_epochs"] = cfg.trainer.get("max_epochs")
    return {k: v for k, v in flat.items() if v is not None}


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def _link_latest(cfg: DictConfig, run_dir: Path) -> None:
    """``outputs/latest`` points at the newest single run, so the README can name its checkpoint."""
    try:
        if HydraConfig.get().mode.name != "RUN":
            return
    except ValueError:
        return
    log_dir = Path(cfg.paths.log_dir).resolve()
    if log_dir not in run_dir.resolve().parents:
        return
    link = log_dir / "latest"
    tmp = log_dir / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(run_dir.resolve(), log_dir))
    os.replace(tmp, link)


def _prepare_speed(cfg: DictConfig, task: pl.LightningModule) -> None:
    """``trainer.channels_last`` and ``model.compile``: both keep the state-dict keys unchanged.

    Weights stored NHWC make cuDNN pick channels-last kernels (inputs follow the weights), and
    ``nn.Module.compile`` compiles in place, so checkpoints never see an ``_orig_mod.`` prefix.
    """
    if cfg.trainer.get("channels_last"):
        task.net.to(memory_format=torch.channels_last)
    compile_opt = cfg.model.get("compile")
    if compile_opt:
        task.net.compile(**({"backend": compile_opt} if isinstance(compile_opt, str) else {}))


def train(cfg: DictConfig) -> float | None:
    """Fit, then validate and test the best checkpoint; return the value of ``cfg.optimized_metric``."""
    check_config(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = output_dir(cfg)
    record_provenance(run_dir)  # provenance.json: versions, commit, Python, the command line

    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path:
        needed = check_resume(cfg, ckpt_path)
        if needed:  # the network the checkpoint was trained as (DenseNet's CIFAR stem before 2026-12-01)
            with open_dict(cfg):
                cfg.model.update(needed)
            print(f"note: {ckpt_path} resumes with " + " ".join(f"model.{k}={json.dumps(v)}" for k, v in needed.items())
                  + " (what its weights need)", flush=True)
    dm = instantiate(cfg.data)
    dm.setup()
    check_optimized_metric(cfg, dm.task, dm.facts())
    task = build_task(cfg, dm)
    if not cfg.model.get("pretrained"):  # init=: a scheme for the fresh network; pretrained weights win
        init_weights(task.net, _container(cfg.get("init")))
    _prepare_finetune(cfg, task, resuming=bool(ckpt_path))
    _prepare_speed(cfg, task)
    trainer = build_trainer(cfg)
    if cfg.get("lr_find"):  # Lightning's range test on optimizer.lr; training then starts from its suggestion
        from zoo.lr_find import find_lr

        find_lr(cfg, trainer, task, dm)

    metrics: dict[str, Any] = {}
    if cfg.get("train", True):
        trainer.fit(task, datamodule=dm, ckpt_path=ckpt_path)
    ckpt_cb = trainer.checkpoint_callback
    best = ckpt_cb.best_model_path if ckpt_cb is not None else ""
    if best and Path(best).is_file():  # evaluate the weights that best.ckpt holds, loaded safely
        task.load_state_dict(load_checkpoint(best)["state_dict"])
        metrics["checkpoint"] = str(Path(best).resolve())
    loggers, trainer.loggers = trainer.loggers, []  # the best epoch's numbers again: not a new point on val/ curves
    trainer.validate(task, datamodule=dm, verbose=False)
    trainer.loggers = loggers
    metrics.update(numbers(trainer.callback_metrics, ("val/",)))
    if cfg.get("test", True):
        trainer.test(task, datamodule=dm, verbose=False)
        metrics.update(numbers(trainer.callback_metrics, ("test/",)))

    if trainer.is_global_zero:
        write_metrics(run_dir, metrics)
        hp_metrics = {f"hp/{k.replace('/', '_')}": v for k, v in metrics.items() if isinstance(v, float)}
        for logger in trainer.loggers:
            if "metrics" in inspect.signature(logger.log_hyperparams).parameters:  # TensorBoard's HParams tab
                logger.log_hyperparams(_hparams_for_tensorboard(cfg), metrics=hp_metrics)
            else:  # CSVLogger and others: settings and final metrics logged separately
                logger.log_hyperparams(_hparams_for_tensorboard(cfg))
                logger.log_metrics(hp_metrics, step=trainer.global_step)
            logger.finalize("success")
        _link_latest(cfg, run_dir)
        report(metrics, run_dir)

    value = metrics.get(cfg.get("optimized_metric", "val/acc"))
    return None if value is None or math.isnan(value) else value


def check_optimized_metric(cfg: DictConfig, kind: str, facts: dict[str, Any]) -> None:
    """``optimized_metric`` (what checkpoints, early stopping and sweeps watch) must be a metric the task logs:
    caught before training, not when the first validation ends without it."""
    metric = cfg.get("optimized_metric")
    cls = task_class(kind)
    if metric is None or not hasattr(cls, "metric_names"):
        return
    names = cls.metric_names(facts)
    if metric not in names:
        raise ZooError(f"optimized_metric={metric}: {kind} training does not log it; it logs {', '.join(names)}")


def check_resume(cfg: DictConfig, ckpt_path: str) -> dict[str, Any]:
    """Fail in one line, before anything is built, if ``ckpt_path`` is unreadable, not data, for another model,
    has weights that do not fit the network ``cfg.model`` asks for, holds callback states that are not what
    those callbacks save (zoo.training.callbacks.resume_state), or its schedule ends before
    ``trainer.max_epochs`` (train.py runs this before Hydra writes into the run).

    Returns the model options its weights need and ``cfg.model`` leaves unset (zoo.registry.options_for_weights:
    a DenseNet of zoo's CIFAR stem before 2026-12-01 needs ``stem_norm=True``), so that the resumed network is the
    one that was trained.
    """
    ckpt, record = load_record(ckpt_path)
    check_callback_states(ckpt, ckpt_path)
    saved, asked = record.model, cfg.model.get("name")
    if saved != asked:
        raise ZooError(f"ckpt_path={ckpt_path} holds a {saved!r} model, but model={asked!r} was asked to resume it")
    _check_schedule_length(cfg, ckpt_path, ckpt, record)
    model = _container(cfg.model)
    weights = state_dict_of(ckpt)
    fitted = options_for_weights(model, weights, record.image_size)
    try:  # the network this resume builds from cfg.model, on the meta device
        record.check_weights(weights, **fitted)
    except ZooError as e:
        raise ZooError(f"{e} (a resume continues the network the checkpoint holds: leave out the model options "
                       f"that change it, or start a new run from these weights with model.pretrained={ckpt_path})"
                       ) from None
    return {k: v for k, v in fitted.items() if model.get(k) != v}


def _check_schedule_length(cfg: DictConfig, ckpt_path: str, ckpt: dict[str, Any], record: Record) -> None:
    """A resume with ``trainer.max_epochs`` past the end of the checkpoint's schedule (cosine's ``T_max``,
    polynomial's ``total_iters``, one-cycle's ``total_steps``) is refused: the scheduler state restored from
    the checkpoint keeps its old length, so the extra epochs would train at the schedule's final learning rate
    (0 for cosine and polynomial; one-cycle fails mid-epoch)."""
    from zoo.training.optim import _LENGTH_ARGS

    sched_cfg = record.config("scheduler") if record.scheduler is not None else None
    states = ckpt.get("lr_schedulers")
    max_epochs = cfg.trainer.get("max_epochs")
    if not sched_cfg or not isinstance(states, list) or not states or not isinstance(states[0], dict):
        return
    key = _LENGTH_ARGS.get(str(sched_cfg.get("_target_", "")).rsplit(".", 1)[-1])
    length = states[0].get(key) if key else None
    if not isinstance(length, int) or isinstance(max_epochs, bool) or not isinstance(max_epochs, int):
        return
    done = ckpt.get("epoch", 0) + 1  # last.ckpt is saved at the end of its epoch
    progress = ((ckpt.get("loops") or {}).get("fit_loop") or {}).get("epoch_progress") or {}
    done = int((progress.get("current") or {}).get("processed", done)) or done
    per_step = sched_cfg.get("interval") == "step" or key == "total_steps"
    steps_per_epoch = max(1, round(int(ckpt.get("global_step", 0)) / max(1, done)))
    planned = max_epochs * steps_per_epoch if per_step else max_epochs
    if planned <= length:
        return
    end = length // steps_per_epoch if per_step else length
    span = f"{length} optimizer steps (epoch {end})" if per_step else f"{length} epochs"
    raise ZooError(f"ckpt_path={ckpt_path}: its {record.scheduler.name} schedule has ended after {span}, "
                   f"{key}={length}; trainer.max_epochs={max_epochs} would train on at its final learning rate. "
                   f"Resume with trainer.max_epochs<={end}, or start a new run from these weights with its own "
                   f"schedule: model.pretrained={ckpt_path} trainer.max_epochs={max_epochs} (and no ckpt_path)")


def _prepare_finetune(cfg: DictConfig, task: pl.LightningModule, resuming: bool) -> None:
    """``model.pretrained=PATH`` (skipped on resume: the checkpoint has newer weights) and ``model.freeze``."""
    from zoo.training.finetune import freeze_backbone, load_pretrained_into, task_classifier_keys

    pretrained, freeze = cfg.model.get("pretrained"), cfg.model.get("freeze")
    if not pretrained and not freeze:
        return
    head = task_classifier_keys(task)
    if pretrained and not resuming:
        note = load_pretrained_into(task.net, pretrained, cfg.model.name, head)
        print(note or f"loaded pretrained weights from {pretrained}", flush=True)
    if freeze:
        if freeze != "backbone":
            raise ZooError(f"model.freeze={freeze!r}: valid values are backbone and null")
        n = freeze_backbone(task.net, head)
        print(f"backbone frozen: {n:,} classifier parameters train ({', '.join(sorted(head))})", flush=True)


def report(metrics: dict[str, Any], run_dir: Path) -> None:
    shown = "  ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))
    print(f"\nfinal: {shown}\nrun directory: {run_dir}", flush=True)
