"""In-memory datamodules: the whole (small) dataset as one uint8 tensor on the training device.

For MNIST- and CIFAR-sized data, the usual per-sample PIL pipeline in worker processes is what limits
training speed. Here each split is loaded once, moved to the device the trainer uses, and every batch
is a slice of it: indexed, converted to float, augmented in one batched operation and normalised,
all on the device. Under DDP each rank reads its own shard, as ``DistributedSampler`` would give it.
With ``balanced_sampler=true`` the training order is drawn with replacement, each sample weighted by
the inverse frequency of its class, so every class is seen equally often in expectation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch

from zoo.datamodules.augment import Augment, Knobs, make_knobs, normalize_uint8
from zoo.datamodules.whiten import WHITEN_KINDS, apply_whitening, fit_whitening
from zoo.errors import ZooError

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Split:
    """One split: ``x`` uint8 (N, C, H, W) images (or (N, T, ...) sequences), ``y`` int64 labels or targets."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ZooError(f"data and labels disagree in length: {len(self.x)} vs {len(self.y)}")

    def __len__(self) -> int:
        return len(self.x)

    def to(self, device: torch.device) -> Split:
        return Split(self.x.to(device, non_blocking=True), self.y.to(device, non_blocking=True))


class TensorBatches:
    """An iterable of ``(inputs, targets)`` batches sliced from tensors that already sit on the device.

    Shuffling uses a generator seeded with ``seed + epoch``, so an epoch's order is reproducible and a
    resumed run sees the same order as an uninterrupted one. With ``world_size > 1`` the permutation
    is padded to a multiple of the world size and rank ``r`` takes every ``world_size``-th index.
    With ``weights`` (one per sample) the epoch's indices are drawn with replacement in proportion to them.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        transform: Transform,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        epoch: Callable[[], int] = lambda: 0,
        rank: int = 0,
        world_size: int = 1,
        target_transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
        weights: torch.Tensor | None = None,
    ) -> None:
        self.split = split
        self.batch_size = batch_size
        self.transform = transform
        self.target_transform = target_transform
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = epoch
        self.rank = rank
        self.world_size = world_size
        self.weights = weights

    def _indices(self) -> torch.Tensor:
        idx = epoch_order(len(self.split), self.seed, self.epoch(), self.shuffle, self.weights)
        if self.world_size > 1:
            n = len(self.split)
            per_rank = -(-n // self.world_size)
            idx = torch.cat([idx, idx[: per_rank * self.world_size - n]])  # pad like DistributedSampler
            idx = idx[self.rank :: self.world_size]
        return idx

    def _num_samples(self) -> int:
        return -(-len(self.split) // self.world_size)

    def __len__(self) -> int:
        n = self._num_samples()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = self._indices().to(self.split.x.device)
        epoch = self.epoch()
        for b in range(len(self)):
            i = idx[b * self.batch_size : (b + 1) * self.batch_size]
            # Training augmentation draws from an RNG seeded by (seed, epoch, batch, rank) and leaves the
            # global RNG alone: a resumed run augments exactly as an uninterrupted one, ranks differ.
            with seeded(self._batch_seed(epoch, b), self.split.x.device, enabled=self.shuffle):
                x, y = self.transform(self.split.x[i]), self.split.y[i]
                if self.target_transform is not None:
                    x, y = self.target_transform(x, y)
            yield x, y

    def _batch_seed(self, epoch: int, batch: int) -> int:
        return sample_seed(self.seed, epoch, batch, self.rank)


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool, weights: torch.Tensor | None = None) -> torch.Tensor:
    """An epoch's order of ``range(n)``, a function of ``(seed, epoch)`` alone: so a resumed run sees the
    order an uninterrupted one saw. With ``weights`` (one per sample) drawn with replacement in
    proportion to them; else a permutation (``shuffle``) or ``0..n-1``."""
    if weights is not None:  # same seed on every rank: the ranks shard one common draw
        g = torch.Generator().manual_seed(seed + epoch)
        return torch.multinomial(weights.double().cpu(), n, replacement=True, generator=g)
    if shuffle:
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
    return torch.arange(n)


def sample_seed(seed: int, epoch: int, position: int, rank: int = 0) -> int:
    """A seed for the random draws of one batch (or one sample) of an epoch: distinct for every
    (seed, epoch, position, rank), and the same in a resumed run."""
    return (((seed * 1_000_003 + epoch) * 1_000_003 + position) * 1_009 + rank) % (2**63)


@contextmanager
def seeded(seed: int, device: torch.device, enabled: bool = True) -> Iterator[None]:
    """Run a block with the CPU (and this CUDA device's) RNG seeded, restoring the outer state after it.

    What ``torch.random.fork_rng`` does, without its accelerator lookup: with a CUDA build of torch on a
    machine without a GPU, under Lightning (which sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1``), that lookup
    loads the NVIDIA driver library and fails, on every batch (docs/benchmarks.md has the cost).
    """
    if not enabled:
        yield
        return
    cuda = device.type == "cuda"
    index = device.index if device.index is not None else torch.cuda.current_device() if cuda else 0
    cpu_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state(index) if cuda else None
    try:
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield
    finally:
        torch.set_rng_state(cpu_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state, index)


class DataModule(pl.LightningDataModule):
    """What every datamodule has, in memory or not: the dataset's facts, batch sizes, the augmentation
    preset and knobs, class weights from the class counts, and the facts a checkpoint stores.

    Facts (the model and the task are built from them, never from a second config key): ``num_classes``,
    ``input_shape``, ``mean``, ``std``, ``class_names``, ``task``.
    """

    name: str = "data"
    task: str = "classification"  # or "regression", "language_model"
    num_classes: int = 0
    input_shape: tuple[int, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    class_names: list[str] = []
    augment_kind: str = "objects"

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        seed: int = 0,
        drop_last: bool = False,
        augment: str | None = "none",
        aug: dict[str, Any] | None = None,
        balanced_sampler: bool = False,
    ) -> None:
        super().__init__()
        self.batch_size = whole_number(batch_size, "data.batch_size")
        self.eval_batch_size = whole_number(batch_size if eval_batch_size is None else eval_batch_size,
                                            "data.eval_batch_size")
        self.seed = whole_number(seed, "seed", minimum=0)
        self.drop_last = bool(drop_last)
        self.augment = augment
        self.aug = dict(aug or {})
        self.balanced_sampler = bool(balanced_sampler)
        self.source_index: dict[str, torch.Tensor] = {}  # where each split's samples sit in the source it was cut from

    def knobs(self) -> Knobs:
        """The ``augment`` preset for this kind of data, with the ``aug`` knobs on top."""
        return make_knobs(self.augment, self.augment_kind, self.aug)

    def augmenter(self) -> Augment:
        """The training pipeline built from :meth:`knobs`."""
        return Augment(self.mean, self.std, self.num_classes, self.knobs())

    def class_counts(self) -> torch.Tensor:
        """How many training samples each class has, (num_classes,) int64."""
        raise NotImplementedError

    def class_weights(self) -> torch.Tensor:
        """Loss weights ``n / (num_classes * count_c)`` (scikit-learn's "balanced"); 0 for absent classes."""
        counts = self.class_counts().double()
        w = counts.sum() / (len(counts) * counts)
        return torch.where(counts > 0, w, torch.zeros_like(w)).float()

    def facts(self) -> dict[str, Any]:
        """What a checkpoint stores about its data, so a model can be rebuilt and fed without it."""
        return {
            "name": self.name,
            "task": self.task,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "mean": list(self.mean),
            "std": list(self.std),
            "class_names": list(self.class_names),
        }


class InMemoryDataModule(DataModule):
    """Base class of the in-memory datasets: subclasses implement :meth:`load_splits` and set the facts.

    Training batches go through :class:`zoo.datamodules.augment.Augment`: the ``augment`` preset (``none``,
    ``standard``, ``strong``, chosen for the dataset's ``augment_kind``: ``objects`` or ``digits``) with the
    ``aug`` knobs on top; validation and test batches are only converted and normalised. ``whiten``
    (``pca`` or ``zca``, :mod:`zoo.datamodules.whiten`) is fitted on the normalised training split and applied
    to every batch after normalisation; ``facts()["whitening"]`` carries it to a checkpoint.
    """

    name: str = "in_memory"

    def __init__(self, *args: Any, whiten: str | None = None, whiten_eps: float = 1e-2, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        whiten = None if whiten in (None, "none", False) else whiten
        if whiten is not None and whiten not in WHITEN_KINDS:
            raise ZooError(f"data.whiten must be none, {' or '.join(WHITEN_KINDS)}; got {whiten!r}")
        if isinstance(whiten_eps, bool) or not isinstance(whiten_eps, (int, float)) or not whiten_eps > 0:
            raise ZooError(f"data.whiten_eps must be a positive number; got {whiten_eps!r}")
        self.whiten, self.whiten_eps = whiten, float(whiten_eps)
        self.whitening: dict[str, Any] | None = None  # fitted in setup
        self.splits: dict[str, Split] = {}
        self._on_device: dict[tuple[str, str], Split] = {}

    # -- what a subclass provides ------------------------------------------------------------
    def load_splits(self) -> dict[str, Split]:
        """Return ``{"train": Split, "val": Split, "test": Split}`` as uint8 CPU tensors."""
        raise NotImplementedError

    def train_transform(self) -> Transform:
        """Batched transform for training batches: augmentation, then conversion, normalisation, whitening."""
        pipeline = self.augmenter()
        if not pipeline.is_random:
            return self.eval_transform()
        return self._whitened(pipeline.images)

    def eval_transform(self) -> Transform:
        """Deterministic batched transform: uint8 -> float in [0, 1] -> normalised (-> whitened)."""
        mean, std = self.mean, self.std
        return self._whitened(lambda x: normalize_uint8(x, mean, std))

    def _whitened(self, transform: Transform) -> Transform:
        fact = self.whitening
        if fact is None:
            return transform
        return lambda x: apply_whitening(transform(x), fact)

    # -- Lightning hooks ----------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        splits = self.load_splits()
        for split in ("train", "val", "test"):
            if split not in splits or len(splits[split]) == 0:
                raise ZooError(f"data {self.name}: the {split} split is empty; a run needs training, validation "
                               f"and test samples (check data.val_size / data.test_size and the data files)")
        self.splits = splits
        if self.whiten is not None:
            normalise = lambda x: normalize_uint8(x, self.mean, self.std)  # noqa: E731
            self.whitening = fit_whitening(self.splits["train"].x, normalise, self.whiten, self.whiten_eps)
    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _split_on_device(self, name: str) -> Split:
        self.setup()
        device = self._device()
        key = (name, str(device))
        if key not in self._on_device:  # moved once per device, then every batch is a slice
            self._on_device[key] = self.splits[name].to(device)
        return self._on_device[key]

    def class_counts(self) -> torch.Tensor:
        """How many training samples each class has, (num_classes,) int64."""
        self.setup()
        y = self.splits["train"].y
        if y.ndim != 1 or y.is_floating_point():
            raise ZooError(f"class counts need integer class labels; data {self.name!r} has targets of shape "
                           f"{tuple(y.shape)}")
        return torch.bincount(y.cpu(), minlength=self.num_classes)

    def sample_weights(self) -> torch.Tensor:
        """Per training sample, the inverse frequency of its class: what the balanced sampler draws by."""
        return self.class_weights()[self.splits["train"].y.cpu()]

    def _batches(self, name: str, train: bool) -> TensorBatches:
        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        pipeline = self.augmenter() if train else None
        return TensorBatches(
            self._split_on_device(name),
            self.batch_size if train else self.eval_batch_size,
            self.train_transform() if train else self.eval_transform(),
            shuffle=train,
            drop_last=self.drop_last and train,
            seed=self.seed,
            epoch=(lambda: trainer.current_epoch) if trainer is not None else (lambda: 0),
            rank=rank,
            world_size=world,
            target_transform=pipeline.mix if pipeline is not None and pipeline.mixes else None,
            weights=self.sample_weights() if train and self.balanced_sampler else None,
        )

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Our batches already sit on the device: skip Lightning's generic walk over the batch."""
        if isinstance(batch, (tuple, list)) and all(isinstance(t, torch.Tensor) and t.device == device for t in batch):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def train_dataloader(self) -> TensorBatches:
        return self._batches("train", train=True)

    def val_dataloader(self) -> TensorBatches:
        return self._batches("val", train=False)

    def test_dataloader(self) -> TensorBatches:
        return self._batches("test", train=False)

    def facts(self) -> dict[str, Any]:
        """The base's facts, and with ``whiten`` the fitted map: ``{"kind", "eps", "mean", "matrix"}`` as
        tensors, for :func:`zoo.datamodules.whiten.apply_whitening` in evaluation and prediction."""
        facts = super().facts()
        if self.whiten is not None:
            self.setup()
            facts["whitening"] = self.whitening
        return facts


# -- config values and splits: checked once, here ----------------------------------------------
def whole_number(value: Any, key: str, minimum: int = 1) -> int:
    """A config value that must be a whole number >= ``minimum``. Refuses what ``int()`` would take
    silently: ``true`` (a bool is an int in Python), ``2.5``, and strings such as ``"abc"``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < minimum:
        raise ZooError(f"{key} must be a whole number >= {minimum}; got {value!r}")
    return int(value)


def held_out_count(value: Any, n: int, key: str) -> int:
    """A held-out split's size: a count (a whole number >= 1) or a fraction of ``n`` in (0, 1)."""
    if isinstance(value, float) and 0 < value < 1:
        count = int(round(value * n))
        if count < 1:
            raise ZooError(f"{key}={value} of {n} samples is no sample at all; give a larger fraction or a count")
        return count
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:  # 2.0: a count has no decimal point
        raise ZooError(f"{key} must be a count (a whole number >= 1) or a fraction in (0, 1); got {value!r}")
    return value


HOLD_OUT_ORDER = ("val", "test")


def hold_out(n: int, sizes: dict[str, Any], seed: int) -> dict[str, torch.Tensor]:
    """Split ``range(n)`` with a fixed seed into ``train`` and the held-out splits of ``sizes``.

    Each size is a count or a fraction (:func:`held_out_count`); a fraction is of what the splits named
    before it leave (``{"test": 0.2, "val": 0.1}``: a tenth of what remains once the test set is out). The
    permutation is cut as train, val, test (the layout every split made here has always had), so every
    index lands in exactly one split. At least one training sample must remain.
    """
    counts, left = {}, n
    for name, value in sizes.items():
        counts[name] = held_out_count(value, left, f"data.{name}_size")
        left -= counts[name]
    if left < 1:
        shown = ", ".join(f"data.{k}_size={v}" for k, v in sizes.items())
        raise ZooError(f"{shown} leave no training samples: they hold out {n - left} of {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out, start = {"train": perm[:left]}, left
    for name in sorted(counts, key=lambda k: HOLD_OUT_ORDER.index(k)):
        out[name] = perm[start : start + counts[name]]
        start += counts[name]
    return out
