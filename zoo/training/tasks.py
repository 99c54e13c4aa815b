"""LightningModules: the one place that turns (network, loss, optimizer, schedule) into training.

A task is built from plain config dictionaries, and saves them as its hyper-parameters, so a
checkpoint can rebuild the network and its data without the command line that trained it.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import nn
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import MulticlassAccuracy

from zoo.errors import ZooError
from zoo.models.layers import AuxLogits
from zoo.registry import build_network
from zoo.training.losses import FocalLoss, SoftTargetCrossEntropy
from zoo.training.optim import configure_optimizers, l1_penalty


def instantiate_loss(loss: dict[str, Any] | None, default: type[nn.Module] = nn.CrossEntropyLoss) -> nn.Module:
    """The loss from its config (one of configs/loss), or the task's ``default`` when there is none.

    A list ``weight`` (``loss.weight=balanced``, resolved by zoo.run.build_task, or given) is converted by
    the zoo losses themselves (zoo.training.losses), the one place that does it.
    """
    return instantiate(loss, _convert_="all") if loss else default()


class TrainEpochStats(Metric):
    """Sums over an epoch's training steps: the loss (weighted by batch size) and, for classification, the
    correct predictions. Processes are synchronised once, when :meth:`compute` gives the epoch's means.
    Three sums cost less per step than torchmetrics' ``MeanMetric`` plus ``MulticlassAccuracy``
    (docs/benchmarks.md).
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("loss_sum", torch.zeros(()), dist_reduce_fx="sum")
        self.add_state("correct", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, loss: torch.Tensor, n: int, correct: torch.Tensor | None = None) -> None:
        self.loss_sum += loss.detach().float() * n  # a bf16 loss times n would round to 3 digits
        self.count += n
        if correct is not None:
            self.correct += correct

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        count = self.count.clamp(min=1)
        return self.loss_sum / count, self.correct.float() / count


class Task(pl.LightningModule):
    """What every task shares: its constructor, ``forward`` through ``self.net``, validation and test through
    the subclass's ``_eval_step(batch, stage)``, the optimizer and schedule from zoo.training.optim, and the
    training loss.

    Arguments (declared here once for every task) are plain dictionaries, Hydra configs converted to
    containers: ``model`` (``name`` + kwargs), ``optimizer`` (a ``_partial_`` optimizer), ``scheduler`` (a
    ``_partial_`` LR scheduler with optional ``interval``/``monitor`` keys, or None), ``loss`` (a config of
    configs/loss, or None for the task's ``default_loss``), and ``data`` (the datamodule config and facts).
    ``l1`` adds ``l1 * sum|w|`` over the weights to the training loss, in tasks with ``supports_l1``.
    A checkpoint stores not these but :attr:`record` (zoo.checkpoint), which zoo.run.build_task sets.

    Training loss: ``train/loss_step`` every ``log_every_n_steps`` steps and the epoch means
    ``train/loss_epoch`` (and, with ``count_correct``, ``train/acc``), accumulated on the device by
    :class:`TrainEpochStats` and logged once per epoch.
    """

    count_correct = False  # tasks that pass `correct` to log_train_loss set this, to log train/acc
    eval_metrics: tuple[str, ...] = ("loss",)  # what validation and test log, as ``{stage}/{name}``
    supports_l1 = False
    default_loss: type[nn.Module] = nn.CrossEntropyLoss
    image_input = True  # the network's `stem: auto` looks at the data's image size

    def __init__(
        self,
        model: dict[str, Any],
        num_classes: int,
        in_channels: int,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        loss: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        l1: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if l1 and not self.supports_l1:
            kind = type(self).__name__
            raise ZooError(f"l1={l1}: the L1 penalty is an option of classification tasks, not of a {kind}")
        self.facts: dict[str, Any] = dict((data or {}).get("facts") or {})
        shape = self.facts.get("input_shape") or [None]
        self.net = build_network(model, num_classes, in_channels, shape[-1] if self.image_input else None)
        self.criterion = instantiate_loss(loss, self.default_loss)
        self.train_stats = TrainEpochStats()
        self.record: Any = None  # zoo.checkpoint.Record: what checkpoints store as hyper_parameters

    @classmethod
    def eval_metric_names(cls, facts: dict[str, Any]) -> list[str]:
        """The names validation logs for data with these ``facts`` (a subclass adds the ones facts decide)."""
        return list(cls.eval_metrics)

    @classmethod
    def metric_names(cls, facts: dict[str, Any]) -> list[str]:
        """Every metric training logs, so ``optimized_metric=`` (which checkpointing and early stopping monitor)
        is checked before training rather than after its first epoch."""
        train = ["train/loss_step", "train/loss_epoch", *(["train/acc"] if cls.count_correct else [])]
        return [*train, *(f"val/{m}" for m in cls.eval_metric_names(facts))]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint's ``hyper_parameters`` are the record (names and plain values), not the configs."""
        if self.record is not None:
            checkpoint["hyper_parameters"] = self.record.to_dict()

    def log_train_loss(self, loss: torch.Tensor, n: int, correct: torch.Tensor | None = None) -> None:
        """Count a training step: its loss over ``n`` samples and, for classification, how many were right."""
        self.train_stats.update(loss, n, correct)
        if self._trainer is not None and self.global_step % self.trainer.log_every_n_steps == 0:
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)

    def on_train_epoch_end(self) -> None:
        if not self.train_stats.update_called:  # no training batch this epoch (limit_train_batches=0)
            return
        loss, acc = self.train_stats.compute()  # synchronised across processes here, once per epoch
        self.train_stats.reset()
        # already equal on every process; sync_dist only tells Lightning so (an all-reduce per epoch)
        self.log("train/loss_epoch", loss, prog_bar=True, sync_dist=True)
        if self.count_correct:
            self.log("train/acc", acc, sync_dist=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor | None:
        raise NotImplementedError

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        return self._eval_step(batch, "test")  # what it returns reaches callbacks (the classifier's logits)

    # zoo.training.optim builds the optimizer (weight decay on weights only) and the schedule (+ warmup) for every task.
    configure_optimizers = configure_optimizers


class ClassificationTask(Task):
    """Image (or sequence) classification: cross-entropy, top-1 and top-5 accuracy; the L1 penalty."""

    supports_l1 = True
    eval_metrics = ("loss", "acc", "acc_top5")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        num_classes = self.hparams.num_classes
        # validate_args=False: the argument checks cost host-device syncs on every update (labels come from
        # our own datamodules, already checked when they were loaded).
        top5 = min(5, num_classes)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_acc5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro", validate_args=False)
        self.test_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.test_acc5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro", validate_args=False)

    count_correct = True

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch  # y: class indices (N,), or soft targets (N, num_classes) from mixup/cutmix
        out = self(x)
        if isinstance(out, AuxLogits):  # auxiliary classifiers count in training only, with their paper weights
            logits = out.logits
            loss = self.criterion(logits, y) + sum(w * self.criterion(a, y) for a, w in zip(out.aux, out.weights))
        else:
            logits = out
            loss = self.criterion(logits, y)
        if self.hparams.l1:
            loss = loss + self.hparams.l1 * l1_penalty(self.net)
        target = y.argmax(1) if y.is_floating_point() else y
        # summed on the device, logged once per epoch; no per-step .item() here
        self.log_train_loss(loss, len(y), (logits.detach().argmax(1) == target).sum())
        return loss

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        acc, acc5 = (self.val_acc, self.val_acc5) if stage == "val" else (self.test_acc, self.test_acc5)
        acc.update(logits, y)
        acc5.update(logits, y)
        self.log(f"{stage}/loss", self.criterion(logits, y), on_epoch=True, prog_bar=stage == "val", sync_dist=True)
        self.log(f"{stage}/acc", acc, on_epoch=True, prog_bar=stage == "val")
        self.log(f"{stage}/acc_top5", acc5, on_epoch=True)
        return logits



CLASSIFICATION_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss, FocalLoss, SoftTargetCrossEntropy)


class SequenceRegressionTask(Task):
    """Regression (the adding problem): a loss from ``configs/loss`` (MSE, L1, smooth L1), metric ``val/mse``.

    A classification loss is refused, not replaced: the regression data configs choose ``loss: mse``.
    A datamodule's ``baseline_mse`` fact (what a memoryless predictor scores) is logged as
    ``val/baseline_mse`` beside ``val/mse``, so TensorBoard shows whether the network beat it.
    """

    default_loss = nn.MSELoss
    image_input = False
    eval_metrics = ("loss", "mse", "mae")

    @classmethod
    def eval_metric_names(cls, facts: dict[str, Any]) -> list[str]:
        return [*cls.eval_metrics, *(["baseline_mse"] if facts.get("baseline_mse") is not None else [])]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.criterion, CLASSIFICATION_LOSSES):
            raise ZooError(f"loss {type(self.criterion).__name__} is a classification loss and this data is "
                           "regression: choose loss=mse, loss=l1 or loss=smooth_l1")
        self.baseline_mse = self.facts.get("baseline_mse")

    def _predict(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self(x)  # N x outputs
        return out.squeeze(-1) if out.shape[-1] == 1 and y.dim() == 1 else out

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.criterion(self._predict(x, y), y)
        self.log_train_loss(loss, len(y))
        return loss

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        x, y = batch
        pred = self._predict(x, y)
        n = len(y)
        self.log(f"{stage}/loss", self.criterion(pred, y), on_epoch=True, batch_size=n, prog_bar=stage == "val")
        self.log(f"{stage}/mse", nn.functional.mse_loss(pred, y), on_epoch=True, batch_size=n, prog_bar=stage == "val")
        self.log(f"{stage}/mae", nn.functional.l1_loss(pred, y), on_epoch=True, batch_size=n)
        if self.baseline_mse is not None:
            self.log(f"{stage}/baseline_mse", float(self.baseline_mse), on_epoch=True, batch_size=n)


def _detach(state: Any) -> Any:
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


class LanguageModelTask(Task):
    """Next-token prediction (``char_text``): cross-entropy per token, perplexity ``val/ppl`` = exp(loss).

    Truncated backpropagation through time: with ``bptt`` in the data config shorter than a window, the
    window is run in chunks of ``bptt`` steps; the recurrent state flows on through the whole window but
    is detached between chunks, so gradients reach back at most ``bptt`` steps. :meth:`sample` writes text.
    The vocabulary comes from the data facts' ``class_names``.
    """

    image_input = False
    eval_metrics = ("loss", "ppl", "bpc")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.hparams.model.get("bidirectional"):
            raise ZooError(
                "a language model predicts the next token, so it cannot be bidirectional; set model.bidirectional=false"
            )
        if not hasattr(self.net, "forward_with_state"):
            name = self.hparams.model.get("name")
            raise ZooError(f"model {name!r} is not recurrent; language modelling needs rnn, lstm or gru")
        data = self.hparams.data or {}
        self.bptt = (data.get("config") or {}).get("bptt")
        self.vocab: list[str] = list(self.facts.get("class_names") or [])
        self.val_nll, self.test_nll = MeanMetric(), MeanMetric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_with_state(x)[0]  # N x V x T

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch  # N x T tokens, and the same shifted by one
        steps = x.shape[1]
        chunk = self.bptt if self.bptt and self.bptt < steps else steps
        state, loss = None, x.new_zeros((), dtype=torch.float32)
        for s in range(0, steps, chunk):
            logits, state = self.net.forward_with_state(x[:, s : s + chunk], state)  # N x V x chunk
            loss = loss + self.criterion(logits, y[:, s : s + chunk]) * logits.shape[-1] / steps
            state = _detach(state)  # truncate: no gradient flows into earlier chunks
        self.log_train_loss(loss, len(y))
        return loss

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        x, y = batch
        loss = self.criterion(self(x), y)
        nll = self.val_nll if stage == "val" else self.test_nll
        nll.update(loss, weight=y.numel())
        self.log(f"{stage}/loss", loss, on_epoch=True, batch_size=len(y), prog_bar=stage == "val")

    def _log_perplexity(self, stage: str) -> None:
        nll = self.val_nll if stage == "val" else self.test_nll
        mean = nll.compute()
        self.log(f"{stage}/ppl", torch.exp(mean), prog_bar=stage == "val")
        self.log(f"{stage}/bpc", mean / math.log(2))  # bits per character
        nll.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_perplexity("val")

    def on_test_epoch_end(self) -> None:
        self._log_perplexity("test")

    @torch.no_grad()
    def sample(
        self, prompt: str = "", length: int = 200, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> str:
        """Continue ``prompt`` by ``length`` characters drawn from softmax(logits / temperature); 0 = greedy."""
        if not self.vocab:
            raise ZooError("this checkpoint stores no vocabulary (data facts class_names); it cannot sample text")
        if temperature < 0:
            raise ZooError(f"temperature must be >= 0; got {temperature}")
        stoi = {c: i for i, c in enumerate(self.vocab)}
        prompt = prompt or ("\n" if "\n" in stoi else self.vocab[0])
        unknown = sorted(set(prompt) - set(stoi))
        if unknown:
            raise ZooError(f"prompt characters not in the model's vocabulary: {''.join(unknown)!r}")
        was_training = self.training
        self.eval()
        tokens = torch.tensor([[stoi[c] for c in prompt]], device=self.device)  # 1 x P
        logits, state = self.net.forward_with_state(tokens)  # 1 x V x P
        out = []
        for _ in range(length):
            last = logits[0, :, -1].float()  # V
            if temperature == 0:
                nxt = int(last.argmax())
            else:
                probs = torch.softmax(last / temperature, dim=0).cpu()
                nxt = int(torch.multinomial(probs, 1, generator=generator))
            out.append(self.vocab[nxt])
            logits, state = self.net.forward_with_state(torch.tensor([[nxt]], device=self.device), state)
        self.train(was_training)
        return prompt + "".join(out)


TASKS: dict[str, type[pl.LightningModule]] = {
    "classification": ClassificationTask,
    "regression": SequenceRegressionTask,
    "language_model": LanguageModelTask,
}


def task_class(kind: str) -> type[pl.LightningModule]:
    """The LightningModule class for a datamodule's ``task`` kind."""
    if kind not in TASKS:
        raise ZooError(f"no task for data of kind {kind!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[kind]

# Tasks in their own modules, built on Task above; each adds itself to TASKS when imported.
import zoo.training.multilabel  # noqa: E402, F401  (TASKS["multilabel"])
