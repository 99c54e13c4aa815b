"""Diagnostics: what TensorBoard shows beyond curves.

:class:`EMA` keeps ``w_ema <- d * w_ema + (1 - d) * w`` after every optimizer step and validates with it.
:class:`TensorBoardDiagnostics` shows why a network trains or does not: per-layer weight and gradient
histograms every epoch and gradient norms every N steps (vanishing/exploding gradients), the model graph, and after
testing a confusion matrix and the test images the model got wrong with the most confidence.
"""


from __future__ import annotations

import warnings
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn

from zoo.datamodules.augment import denormalize
from zoo.errors import ZooError
from zoo.training.callbacks.figures import class_name, confusion_figure, per_class_figure, wrong_figure
from zoo.training.callbacks.measures import confusion_counts, labelled_logits, recall_per_class


def _strip(name: str) -> str:
    return name[len("net.") :] if name.startswith("net.") else name


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
    (far more than all the gradient norms; docs/benchmarks.md has the figures).
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
        per_class: bool = True,
        pr_curves_max_classes: int = 100,
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
        self.per_class = per_class
        self.pr_curves_max_classes = int(pr_curves_max_classes)
        self._graph_done = False
        self._hooks: list[Any] = []
        self._dead: dict[str, list[torch.Tensor]] = {}
        self._reset_test()

    def _reset_test(self) -> None:
        self._cm: torch.Tensor | None = None
        self._wrong: list[tuple[float, int, int, torch.Tensor]] = []  # (confidence, predicted, true, image)
        self._probs: list[torch.Tensor] = []  # N x classes softmax outputs, for the precision-recall curves
        self._labels: list[torch.Tensor] = []

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

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        step = trainer.global_step
        if self._hooks:
            self._log_dead_units(trainer)
        norms_now = self.grad_norms and step % self.every_n_steps == 0
        histograms_now = step == self._histogram_step
        if norms_now or histograms_now:  # else nothing at all (not even a no_grad context) on this step
            with torch.no_grad():
                self._log_gradients(trainer, pl_module, step, norms_now, histograms_now)

    def _log_gradients(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int, norms_now: bool,
                       histograms_now: bool) -> None:
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
        labelled = labelled_logits(outputs, batch)
        if labelled is None:
            return
        x, (outputs, y) = batch[0], labelled
        probs = outputs.float().softmax(1)
        conf, pred = probs.max(1)
        if self.pr_curves_max_classes and outputs.shape[1] <= self.pr_curves_max_classes:
            self._probs.append(probs.cpu())
            self._labels.append(y.cpu())
        if self.confusion_matrix or self.per_class:
            counts = confusion_counts(outputs, y)  # the count PerClassRecall reads its test/recall_* from
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
        if writer is None or (self._cm is None and not self._wrong and not self._probs):
            return
        facts = getattr(pl_module, "facts", {})  # zoo.training.tasks.Task: the data facts it was built with
        names = list(facts.get("class_names") or [])
        step = trainer.global_step
        if self._cm is not None and self.confusion_matrix:
            writer.add_figure("test/confusion_matrix", confusion_figure(self._cm.cpu(), names), step)
        if self._cm is not None and self.per_class:  # recall of each class: the diagonal over the row sums
            acc = recall_per_class(self._cm.cpu().double()).tolist()
            for i, a in enumerate(acc):
                writer.add_scalar(f"test/acc_per_class/{class_name(names, i)}", a, step)
            writer.add_figure("test/acc_per_class", per_class_figure(acc, names), step)
        if self._probs:  # TensorBoard's PR-curve plugin: one curve per class, that class against the rest
            probs, labels = torch.cat(self._probs), torch.cat(self._labels)
            for i in range(probs.shape[1]):
                writer.add_pr_curve(f"test/pr_curve/{class_name(names, i)}", labels == i, probs[:, i], step)
        if self._wrong:
            mean, std = facts.get("mean") or [], facts.get("std") or []
            writer.add_figure("test/most_confident_wrong", wrong_figure(self._wrong, names, mean, std), step)
        writer.flush()
        self._reset_test()


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
            x = denormalize(x, mean, std)
        grid = make_grid(x.clamp(0, 1), nrow=self.nrow, padding=2, pad_value=1.0)
        for logger in tb:
            logger.experiment.add_image("train/augmented_batch", grid, trainer.global_step)




class EpochCurves(Callback):
    """``RUN/curves.png``: training and validation loss and metrics per epoch, for people who do not start
    TensorBoard. Written when fitting ends; the history is part of the checkpoint, so a resumed run's picture
    starts at epoch 1 too.

    Lightning runs validation inside a training epoch and the task logs the epoch's training means after the
    callbacks' ``on_train_epoch_end``, so validation numbers are taken when validation ends and the training
    means of epoch ``e`` when epoch ``e + 1`` starts (or fitting ends).
    """

    TRAIN = ("train/loss_epoch", "train/acc")
    VAL = ("val/loss", "val/acc", "val/mse", "val/ppl")

    def __init__(self, filename: str = "curves.png") -> None:
        self.filename = filename
        self.history: dict[str, dict[int, float]] = {}

    def _take(self, trainer: pl.Trainer, tags: tuple[str, ...], epoch: int) -> None:
        for tag in tags:
            value = trainer.callback_metrics.get(tag)
            if value is not None and torch.as_tensor(value).numel() == 1:
                self.history.setdefault(tag, {})[epoch] = float(value)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == TrainerFn.FITTING:
            self._take(trainer, self.VAL, trainer.current_epoch)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch > 0:
            self._take(trainer, self.TRAIN, trainer.current_epoch - 1)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._take(trainer, self.TRAIN, trainer.current_epoch - 1)  # the loop has counted the last epoch
        if not trainer.is_global_zero or not self.history:
            return
        import matplotlib.pyplot as plt

        from zoo.training.callbacks.figures import curves_figure

        fig = curves_figure(self.history)
        fig.savefig(f"{trainer.default_root_dir}/{self.filename}", dpi=100)
        plt.close(fig)

    def state_dict(self) -> dict[str, Any]:
        return {"history": {tag: dict(points) for tag, points in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        history = state_dict.get("history") or {}
        self.history = {str(tag): {int(e): float(v) for e, v in points.items()} for tag, points in history.items()}
