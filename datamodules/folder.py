"""ImageFolder: the one dataset that does not fit in memory, decoded and cropped per sample in DataLoader workers.

Layout as torchvision's ``ImageFolder`` reads it: ``data_dir/train/<class>/*.jpg``, ``data_dir/val/<class>/...``
and, optionally, ``data_dir/test/<class>/...``; class names are the sorted sub-folder names.

Exact resume with workers: nothing random here depends on a worker's or the main process's RNG stream.
The training order is a permutation seeded by ``(seed, epoch)`` (:func:`zoo.datamodules.base.epoch_order`, the
in-memory datasets' order), each drawn sample carries a seed of ``(seed, epoch, position)`` that seeds its
random crop in whichever worker decodes it, and a batch's device-side augmentation is seeded by its first
sample's seed. The DataLoader draws its workers' base seed from a generator of its own, not from the
global RNG that dropout uses, and makes its iterator only when the first batch is asked for (by then a
resumed run knows its epoch, :class:`_LateLoader`). So a run resumed from ``last.ckpt`` crops, flips and
drops exactly as the uninterrupted run did, whatever ``num_workers`` is and whether the workers persist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.utils.data
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from zoo.datamodules.augment import Augment, Knobs, normalize_uint8
from zoo.datamodules.base import DataModule, epoch_order, hold_out, sample_seed, seeded, whole_number
from zoo.errors import ZooError


class UnreadableImage(ZooError):
    """An image file PIL cannot decode, raised in a worker.

    The DataLoader re-raises a worker's exception in the main process as ``type(exc)(text)``, where the text
    is "Caught UnreadableImage in DataLoader worker process 0. Original Traceback ...": the original message
    is the traceback's last line, and only that is kept, so the user sees one line naming the file.
    """

    def __init__(self, message: str) -> None:
        if "Traceback (most recent call last)" in message:
            last = message.strip().splitlines()[-1]
            message = last.split(": ", 1)[1] if last.startswith(f"{__name__}.{type(self).__name__}: ") else last
        super().__init__(message)


class _Decode:
    """Open an image file as RGB, naming the file when it cannot be read (a picklable loader for workers)."""

    def __call__(self, path: str) -> Any:
        from PIL import Image

        try:
            with open(path, "rb") as f:
                return Image.open(f).convert("RGB")
        except Exception as e:  # truncated JPEG, not an image, unreadable file
            raise UnreadableImage(f"cannot read image {path}: {type(e).__name__}: {e}") from e


class _Samples(Dataset):
    """A folder (or a subset of it) with its per-sample PIL transform; picklable, for the workers.

    Given ``(index, seed)`` (training), the random crop draws from the CPU RNG seeded with ``seed``, the
    outer RNG state restored afterwards, and the seed comes back with the sample for the device side.
    """

    def __init__(self, base: Any, transform: Callable[[Any], torch.Tensor]) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int] | tuple[torch.Tensor, int, int]:
        if isinstance(key, tuple):
            index, seed = key
            image, label = self.base[index]
            with seeded(seed, torch.device("cpu")):
                return self.transform(image), label, seed
        image, label = self.base[key]
        return self.transform(image), label


class _EpochSampler(Sampler):
    """Training order: the ``(seed, epoch)`` permutation (or weighted draw) with a seed per drawn sample."""

    def __init__(self, n: int, seed: int, epoch: Callable[[], int], weights: torch.Tensor | None = None) -> None:
        self.n, self.seed, self.epoch, self.weights = n, seed, epoch, weights

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch()
        order = epoch_order(self.n, self.seed, epoch, shuffle=True, weights=self.weights)
        return iter((int(i), sample_seed(self.seed, epoch, pos)) for pos, i in enumerate(order.tolist()))


class _LateLoader(DataLoader):
    """A DataLoader whose iterator is made at the first batch asked for, not when ``iter()`` is called.

    Workers start drawing indices from the sampler as soon as an iterator exists (``prefetch_factor``
    batches each), and a resumed run's first ``iter()`` comes before Lightning brings ``current_epoch`` up
    to date: the workers would crop epoch 0 again. By the first ``next()`` the epoch is right, as it is for
    the in-memory :class:`~zoo.datamodules.base.TensorBatches`, whose generator reads it at the same moment.
    """

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        make = super().__iter__

        def late() -> Iterator[Any]:
            yield from make()

        return late()


class ImageFolder(DataModule):
    """ImageNet-style folders, decoded per sample by PIL in DataLoader workers (not an in-memory datamodule).

    Training uses an Inception-style random resized crop to ``image_size`` (when ``augment`` is not
    ``none``); evaluation resizes the short side to ``resize`` and takes the centre ``image_size`` crop. The
    workers hand over uint8 batches; flips, colour, erasing, normalisation and mixing then run batched on
    the device (:meth:`on_after_batch_transfer`) through one :class:`Augment`, built once in :meth:`setup`.

    Splits: ``val_size=0`` validates on ``val/``; a count or fraction instead validates on a seeded split
    of ``train/`` and keeps ``val/`` as the test set. Without ``test/``, test is ``val/``; without ``val/``
    a tenth of ``train/`` validates and tests.
    """

    name = "imagefolder"
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's

    def __init__(self, data_dir: str | Path = "data/imagefolder", image_size: int = 224, resize: int | None = None,
                 scale: tuple[float, float] = (0.08, 1.0), num_workers: int = 4, val_size: float | int = 0,
                 split_seed: int = 0, whiten: str | None = None, whiten_eps: float = 0.01,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if whiten not in (None, "none", False):
            raise ZooError("data.whiten needs an in-memory dataset: imagefolder images are cropped per sample, "
                           "and a 3 x 224 x 224 whitening matrix would not fit in memory")
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.image_size = whole_number(image_size, "data.image_size")
        self.resize = whole_number(resize, "data.resize") if resize else int(round(self.image_size * 256 / 224))
        scale = list(scale)
        if len(scale) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scale) or \
                not 0 < scale[0] <= scale[1] <= 1:
            raise ZooError(f"data.scale must be two area fractions 0 < low <= high <= 1; got {scale}")
        self.scale = (float(scale[0]), float(scale[1]))
        self.num_workers = whole_number(num_workers, "data.num_workers", minimum=0)
        self.val_size, self.split_seed = val_size, split_seed  # val_size is checked by hold_out in setup
        self.input_shape = (3, self.image_size, self.image_size)
        self.datasets: dict[str, _Samples] = {}
        self.train_targets = torch.zeros(0, dtype=torch.int64)
        self.device_augment: Augment | None = None  # built once num_classes is known

    def _folder(self, split: str) -> Any:
        import torchvision.datasets

        root = self.data_dir / split
        try:
            return torchvision.datasets.ImageFolder(str(root), loader=_Decode())
        except (FileNotFoundError, OSError) as e:
            raise ZooError(f"imagefolder: no images found in {root} ({e}); point data.data_dir at a folder with "
                           f"train/ and val/ sub-folders of class folders (it cannot be downloaded)") from e

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        if not (self.data_dir / "train").is_dir():
            raise ZooError(f"imagefolder not found: looked for {self.data_dir}/train/<class>/<image>; point "
                           f"data.data_dir at a folder with train/ and val/ sub-folders of class folders")
        train = self._folder("train")
        val = self._folder("val") if (self.data_dir / "val").is_dir() else None
        test = self._folder("test") if (self.data_dir / "test").is_dir() else val
        for name, ds in (("val", val), ("test", test)):
            if ds is not None and ds.classes != train.classes:
                raise ZooError(f"imagefolder: {name}/ has classes {ds.classes}, train/ has {train.classes}")
        self.class_names, self.num_classes = list(train.classes), len(train.classes)
        targets = torch.tensor(train.targets, dtype=torch.int64)
        if self.val_size or val is None:
            index = hold_out(len(train), {"val": self.val_size or 0.1}, self.split_seed)
            self.source_index = index
            self.train_targets = targets[index["train"]]
            held = Subset(train, index["val"].tolist())
            parts = {"train": Subset(train, index["train"].tolist()), "val": held,
                     "test": test if test is not None else held}
        else:
            self.train_targets = targets
            parts = {"train": train, "val": val, "test": test}
        self.datasets = {k: _Samples(v, self.pil_transform(k == "train")) for k, v in parts.items()}
        self.device_augment = self.augmenter()

    def pil_transform(self, train: bool) -> Any:
        """Per-sample PIL work in the workers: decode is done by the folder, then crop to uint8 (3, S, S)."""
        from torchvision.transforms import v2

        if train and (self.augment or "none") != "none":
            crop = [v2.RandomResizedCrop(self.image_size, scale=self.scale, antialias=True)]
        else:
            crop = [v2.Resize(self.resize, antialias=True), v2.CenterCrop(self.image_size)]
        return v2.Compose([v2.PILToTensor(), *crop])

    def knobs(self) -> Knobs:
        """The device-side part: the crops happen in the workers, so the preset's crops are left out."""
        from dataclasses import replace

        return replace(super().knobs(), crop_padding=0, resized_crop=None)

    def class_counts(self) -> torch.Tensor:
        self.setup()
        return torch.bincount(self.train_targets, minlength=self.num_classes)

    def _loader(self, split: str, train: bool) -> DataLoader:
        self.setup()
        sampler = None
        if train:
            trainer = getattr(self, "trainer", None)
            weights = self.class_weights()[self.train_targets] if self.balanced_sampler else None
            sampler = _EpochSampler(len(self.datasets["train"]), self.seed,
                                    (lambda: trainer.current_epoch) if trainer is not None else (lambda: 0), weights)
        return _LateLoader(self.datasets[split], batch_size=self.batch_size if train else self.eval_batch_size,
                          sampler=sampler, num_workers=self.num_workers, drop_last=self.drop_last and train,
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available(),
                          generator=torch.Generator().manual_seed(self.seed))  # not the global RNG

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 batch on the device -> augmented (training: it carries its samples' seeds) or normalised."""
        if isinstance(batch, torch.Tensor):  # the model summary's example input: not one of our batches
            return batch
        if len(batch) == 3:
            x, y, seeds = batch
            pipeline = self.device_augment or self.augmenter()
            with seeded(int(seeds[0]), x.device):
                return pipeline.mix(pipeline.images(x), y)
        x, y = batch
        return normalize_uint8(x, self.mean, self.std), y
