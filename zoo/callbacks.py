"""Lightning callbacks: an exponential moving average of the weights, and what TensorBoard shows beyond curves.

:class:`EMA` keeps ``w_ema <- d * w_ema + (1 - d) * w`` after every optimizer step and validates with it.
:class:`TensorBoardDiagnostics` shows why a network trains or does not: per-layer weight and gradient
histograms every epoch and gradient norms every N steps (vanishing/exploding gradients), the model graph, and after
testing a confusion matrix and the test images the model got wrong with the most confidence.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.callbacks import LearningRateMonitor as _LightningLRMonitor
from pytorch_lightning.callbacks import ModelCheckpoint as _LightningModelCheckpoint
from pytorch_lightning.callbacks import RichProgressBar as _LightningRichProgressBar
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn

from zoo.errors import ZooError


def _strip(name: str) -> str:
    return name[len("net.") :] if name.startswith("net.") else name


class LearningRateMonitor(_LightningLRMonitor):
    """Lightning's monitor, with one ``train/lr`` for parameter groups that differ only in weight decay.

    zoo.optim splits the parameters into ``decay``/``no_decay`` groups (and ``head_``/``backbone_`` ones with
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


class ModelCheckpoint(_LightningModelCheckpoint):
    """Lightning's ModelCheckpoint, with its ``state_key`` computed once.

    Lightning names every callback hook call by the callback's ``state_key`` (six per training step);
    ModelCheckpoint's is the ``repr`` of a dict of five settings, rebuilt at every call. The settings it
    is built from do not change after construction, so the key (and the checkpoints' ``callbacks`` entry
    it names) is exactly Lightning's.
    """

    @property
    def state_key(self) -> str:
        key = self.__dict__.get("_zoo_state_key")
        if key is None:
            key = self.__dict__["_zoo_state_key"] = super().state_key
        return key


class RichProgressBar(_LightningRichProgressBar):
    """Lightning's Rich progress bar, fed at most ``refresh_rate`` times a second instead of after every batch.

    The bar is redrawn ``refresh_rate`` times a second by a background thread. Lightning's callback updates
    it after every batch all the same: it moves the bar and reads every logged metric
    (``trainer.progress_bar_metrics``, an ``.item()`` per value), about 75 us, 1.6% of a LeNet-5 step on
    this project's CPU, and mostly for updates no redraw ever shows. Here a batch updates the bar only once
    that interval has passed, and the last batch of a loop always does, so the bar still ends full.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next_update = 0.0

    def _due(self, current: int, total: Any) -> bool:
        if not self.is_enabled:
            return False
        if isinstance(total, list):  # per dataloader
            total = total[self._current_eval_dataloader_idx or 0] if total else math.inf
        now = time.monotonic()
        if now < self._next_update and current < total:
            return False
        self._next_update = now + 1.0 / self.refresh_rate
        return True

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._due(batch_idx + 1, self.total_train_batches):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        total = trainer.num_sanity_val_batches if trainer.sanity_checking else trainer.num_val_batches
        if self._due(batch_idx + 1, total):
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._due(batch_idx + 1, trainer.num_test_batches):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._due(batch_idx + 1, trainer.num_predict_batches):
            super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)


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


class TensorBoardDiagnostics(Callback):
    """Why a network trains or not, in TensorBoard.

    Every ``every_n_steps`` optimizer steps (the gradients already unscaled, before clipping): the gradient
    norm of each parameter tensor as ``grad_norm/<name>`` plus ``grad_norm/total`` (to every logger), and
    ``dead_relu/<module>``: the fraction of a ReLU's units (channels or features) that output zero for every
    input of that batch. At the first optimizer step of every ``histogram_every_n_epochs``-th epoch:
    ``weights/<name>``, ``grads/<name>`` histograms (TensorBoard only; 0 turns them off). Once, on the first
    batch: the model graph. After testing: ``test/confusion_matrix`` and ``test/most_confident_wrong`` (the
    ``num_wrong`` misclassified test images with the highest confidence, titled "predicted (p) / true").

    Cost: nothing runs on the other steps. Histograms are per epoch because they are the expensive part
    (about 35 ms for LeNet-5's 20 tensors on a CPU core, against 2 ms for all its gradient norms): every
    100 steps they added 7% to a LeNet-5 epoch.
    """

    def __init__(
        self,
        every_n_steps: int = 100,
        histogram_every_n_epochs: int = 1,
        grad_norms: bool = True,
        log_graph: bool = True,
        confusion_matrix: bool = True,
        num_wrong: int = 16,
        dead_units: bool = True,
    ) -> None:
        if every_n_steps < 1:
            raise ZooError(f"diagnostics every_n_steps must be >= 1; got {every_n_steps}")
        if histogram_every_n_epochs < 0:
            raise ZooError(
                f"diagnostics histogram_every_n_epochs must be >= 0 (0: none); got {histogram_every_n_epochs}"
            )
        self.every_n_steps = int(every_n_steps)
        self.histogram_every_n_epochs = int(histogram_every_n_epochs)
        self._histogram_step: int | None = None  # the optimizer step that writes histograms, set per epoch
        self.grad_norms = grad_norms
        self.log_graph = log_graph
        self.confusion_matrix = confusion_matrix
        self.num_wrong = int(num_wrong)
        self.dead_units = dead_units
        self._graph_done = False
        self._hooks: list[Any] = []
        self._dead: dict[str, list[torch.Tensor]] = {}
        self._reset_test()

    def _reset_test(self) -> None:
        self._cm: torch.Tensor | None = None
        self._wrong: list[tuple[float, int, int, torch.Tensor]] = []  # (confidence, predicted, true, image)

    @staticmethod
    def _tensorboard(trainer: pl.Trainer) -> Any:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        return None

    # -- training -------------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        every = self.histogram_every_n_epochs
        self._histogram_step = trainer.global_step if every and trainer.current_epoch % every == 0 else None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.dead_units and trainer.global_step % self.every_n_steps == 0 and not self._hooks:
            self._watch_relus(pl_module)
        if not self.log_graph or self._graph_done:
            return
        self._graph_done = True
        writer = self._tensorboard(trainer)
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if writer is None or not isinstance(x, torch.Tensor):
            return
        net = getattr(pl_module, "net", pl_module)
        was_training = net.training
        net.eval()  # trace without touching BatchNorm statistics or dropout masks
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit.trace's deprecation and tracer warnings
                writer.add_graph(net, x[:2])
        except Exception as e:  # noqa: BLE001 - a graph that cannot be traced must not stop training
            print(f"note: model graph not logged ({type(e).__name__}: {str(e).splitlines()[0][:120]})", flush=True)
        finally:
            net.train(was_training)

    def _watch_relus(self, pl_module: pl.LightningModule) -> None:
        """Forward hooks on every ReLU for this one batch: the fraction of units that are zero for all inputs."""
        net = getattr(pl_module, "net", pl_module)

        def hook(name: str) -> Any:
            def record(module: nn.Module, args: Any, out: torch.Tensor) -> None:
                if isinstance(out, torch.Tensor) and out.ndim >= 2:
                    alive = out.detach().transpose(0, 1).flatten(1).amax(1) > 0  # per channel / feature
                    self._dead.setdefault(name, []).append(1.0 - alive.float().mean())
            return record

        for name, m in net.named_modules():
            if isinstance(m, (nn.ReLU, nn.ReLU6)):
                self._hooks.append(m.register_forward_hook(hook(name)))

    def _log_dead_units(self, trainer: pl.Trainer) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
        if self._dead:  # a ReLU module used several times (torchvision blocks) reports its mean
            names = list(self._dead)
            values = torch.stack([torch.stack(self._dead[n]).mean() for n in names]).cpu().tolist()
            for logger in trainer.loggers:
                logger.log_metrics({f"dead_relu/{n}": v for n, v in zip(names, values)}, step=trainer.global_step)
        self._dead = {}

    @torch.no_grad()
    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        step = trainer.global_step
        if self._hooks:
            self._log_dead_units(trainer)
        norms_now = self.grad_norms and step % self.every_n_steps == 0
        histograms_now = step == self._histogram_step
        if not (norms_now or histograms_now):
            return
        named = [(_strip(n), p) for n, p in pl_module.named_parameters() if p.grad is not None]
        if not named:
            return
        if norms_now:
            norms = torch.stack(torch._foreach_norm([p.grad for _, p in named])).float()
            total = norms.norm()
            values = norms.cpu().tolist()  # one transfer for all layers
            metrics = {f"grad_norm/{n}": v for (n, _), v in zip(named, values)}
            metrics["grad_norm/total"] = float(total)
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
        writer = self._tensorboard(trainer)
        if histograms_now and writer is not None:
            for n, p in named:
                writer.add_histogram(f"weights/{n}", p.detach().float().cpu(), step)
                writer.add_histogram(f"grads/{n}", p.grad.detach().float().cpu(), step)

    # -- testing ----------------------------------------------------------------------------------------
    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset_test()

    @torch.no_grad()
    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if not isinstance(outputs, torch.Tensor) or outputs.ndim != 2 or not isinstance(batch, (tuple, list)):
            return
        x, y = batch[0], batch[1]
        if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.is_floating_point():
            return
        c = outputs.shape[1]
        probs = outputs.float().softmax(1)
        conf, pred = probs.max(1)
        if self.confusion_matrix:
            counts = torch.bincount(y * c + pred, minlength=c * c).view(c, c)
            self._cm = counts if self._cm is None else self._cm + counts
        if self.num_wrong and isinstance(x, torch.Tensor) and x.ndim == 4:
            wrong = (pred != y).nonzero().flatten()
            if len(wrong):
                top = wrong[conf[wrong].argsort(descending=True)[: self.num_wrong]]
                for i, cf, p, t in zip(top.tolist(), conf[top].tolist(), pred[top].tolist(), y[top].tolist()):
                    self._wrong.append((cf, p, t, x[i].detach().float().cpu()))
                self._wrong = sorted(self._wrong, key=lambda w: -w[0])[: self.num_wrong]

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = self._tensorboard(trainer)
        if writer is None or (self._cm is None and not self._wrong):
            return
        facts = (pl_module.hparams.get("data") or {}).get("facts", {}) if hasattr(pl_module, "hparams") else {}
        names = list(facts.get("class_names") or [])
        step = trainer.global_step
        if self._cm is not None:
            writer.add_figure("test/confusion_matrix", confusion_figure(self._cm.cpu(), names), step)
        if self._wrong:
            mean, std = facts.get("mean") or [], facts.get("std") or []
            writer.add_figure("test/most_confident_wrong", wrong_figure(self._wrong, names, mean, std), step)
        writer.flush()
        self._reset_test()


def _class_name(names: list[str], i: int) -> str:
    return names[i] if i < len(names) else str(i)


def confusion_figure(cm: torch.Tensor, class_names: list[str]) -> Any:
    """A matplotlib figure of a confusion matrix: rows true classes, columns predictions, row-normalised colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = cm.shape[0]
    names = class_names if len(class_names) == c else [str(i) for i in range(c)]
    rates = cm.float() / cm.sum(1, keepdim=True).clamp(min=1)
    size = min(12.0, 2.0 + 0.45 * c)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    if c <= 30:
        ax.set_xticks(range(c), names, rotation=90, fontsize=8)
        ax.set_yticks(range(c), names, fontsize=8)
        if c <= 20:
            for i in range(c):
                for j in range(c):
                    if cm[i, j]:
                        ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                                color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"test accuracy {cm.diag().sum().item() / max(1, cm.sum().item()):.4f}")
    fig.tight_layout()
    return fig


def wrong_figure(wrong: list[tuple[float, int, int, torch.Tensor]], class_names: list[str], mean: list[float],
                 std: list[float]) -> Any:
    """A grid of misclassified images (un-normalised with the data's mean/std), titled "pred (p) / true"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(8, len(wrong))
    rows = math.ceil(len(wrong) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (conf, pred, true, img) in zip(axes.flat, wrong):
        if len(mean) == img.shape[0] and len(std) == img.shape[0]:
            img = img * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
        else:
            img = (img - img.min()) / (img.max() - img.min()).clamp(min=1e-8)
        img = img.clamp(0, 1)
        if img.shape[0] == 1:
            ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(img[:3].permute(1, 2, 0).numpy())
        ax.set_title(f"{_class_name(class_names, pred)} ({conf:.2f}) / {_class_name(class_names, true)}", fontsize=7)
    fig.tight_layout()
    return fig


class AugmentedBatchImages(Callback):
    """The first training batch as the network sees it (augmented, then denormalised with the data's
    mean/std) as one image grid in TensorBoard, ``train/augmented_batch``: a look at what the
    augmentation really does. Image batches (N, C, H, W) only; other data is skipped."""

    def __init__(self, max_images: int = 64, nrow: int = 8) -> None:
        self.max_images, self.nrow = max_images, nrow
        self.done = False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.done or not trainer.is_global_zero:
            return
        self.done = True
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        tb = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not tb or not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3):
            return
        from torchvision.utils import make_grid

        x = x[: self.max_images].detach().float().cpu()
        dm = getattr(trainer, "datamodule", None)
        mean, std = list(getattr(dm, "mean", ())), list(getattr(dm, "std", ()))
        if len(mean) == x.shape[1] and len(std) == x.shape[1]:
            x = x * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
        grid = make_grid(x.clamp(0, 1), nrow=self.nrow, padding=2, pad_value=1.0)
        for logger in tb:
            logger.experiment.add_image("train/augmented_batch", grid, trainer.global_step)


def read_scalars(run_dir: str | Path, prefix: str = "") -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a run's TensorBoard event files whose tag starts with ``prefix``: ``{tag: [(step, value)]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for f in sorted(Path(run_dir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            if tag.startswith(prefix):
                out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m zoo.callbacks RUN_DIR``: the mean gradient norm of each layer's weights over the run."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m zoo.callbacks RUN_DIR   (per-layer mean gradient norms of a run)")
    norms = read_scalars(args[0], "grad_norm/")
    if not norms:
        raise SystemExit(f"error: no grad_norm/* scalars under {args[0]} (was callbacks.diagnostics on?)")
    for tag, values in norms.items():
        if tag.endswith(".weight") or tag.endswith("total"):
            print(f"{tag[len('grad_norm/'):]:32s} {sum(v for _, v in values) / len(values):.3e}")


if __name__ == "__main__":
    main()
