"""Tasks derived from the 5,000 embedded MNIST digits: multi-label, binary, and an imbalanced split.

They reuse :class:`zoo.datamodules.vision.MNISTTiny`'s fixed 4,000/500/500 split of the digits, so no test digit
is ever seen in training, whatever is built from them:

- ``multi_digits``: a 28 x 28 canvas of ``grid`` x ``grid`` cells, each holding a (downscaled) digit with
  probability ``fill`` (at least one), the label the set of digits present as a 10-way 0/1 vector. The
  canvas keeps MNIST's size, so every model of the zoo takes it; a ``multilabel`` task (sigmoid outputs).
- ``binary_digits``: the digits with one 0/1 label, ``positive`` (default: the odd digits) against the rest;
  a ``multilabel`` task with one label, i.e. binary classification with one sigmoid output.
- ``imbalanced_digits``: 10-way classification whose training split keeps only ``keep`` of each digit of
  ``minority``; validation and test stay as they were (balanced), so per-class recall shows what the
  imbalance cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from zoo.datamodules.base import Split
from zoo.datamodules.vision import DIGITS, MNISTTiny
from zoo.errors import ZooError


class _DerivedDigits(MNISTTiny):
    """MNISTTiny's splits, turned into another task by :meth:`derive` (per split, seeded)."""

    def derive(self, split: Split, name: str) -> Split:
        raise NotImplementedError

    def load_splits(self) -> dict[str, Split]:
        return {name: self.derive(split, name) for name, split in super().load_splits().items()}

    def label_frequency(self) -> list[float]:
        """Per label, the fraction of training samples that carry it (what ``pos_weight: balanced`` uses)."""
        self.setup()
        return [round(float(f), 6) for f in self.splits["train"].y.float().mean(0)]

    def facts(self) -> dict:
        return {**super().facts(), "label_frequency": self.label_frequency()}


class MultiDigits(_DerivedDigits):
    """Several digits on one 28 x 28 canvas; labels: which of the ten digits appear (a multi-hot vector).

    ``train_size``, ``val_size`` and ``test_size`` count canvases, drawn from the digits of the same split."""

    name = "multi_digits"
    task = "multilabel"

    def __init__(self, grid: int = 2, fill: float = 0.6, train_size: int = 8000, val_size: int = 500,
                 test_size: int = 500, **kwargs) -> None:
        super().__init__(**kwargs)  # the digits come from MNISTTiny's fixed 4,000/500/500 split
        if int(grid) not in (1, 2, 4) or not 0.0 < float(fill) <= 1.0:
            raise ZooError(f"data.grid must be 1, 2 or 4 (cells per side of 28 pixels) and 0 < data.fill <= 1; "
                           f"got grid={grid}, fill={fill}")
        self.grid, self.fill, self.train_size = int(grid), float(fill), int(train_size)
        self.sizes = {"train": self.train_size, "val": val_size, "test": test_size}

    def derive(self, split: Split, name: str) -> Split:
        n, g, cell = self.sizes[name], self.grid, 28 // self.grid
        gen = torch.Generator().manual_seed(self.split_seed * 1000 + ("train", "val", "test").index(name))
        digits = F.avg_pool2d(split.x.float(), self.grid) if g > 1 else split.x.float()  # M x 1 x cell x cell
        pick = torch.randint(len(split), (n, g * g), generator=gen)
        used = torch.rand(n, g * g, generator=gen) < self.fill
        used[torch.arange(n), torch.randint(g * g, (n,), generator=gen)] = True  # never an empty canvas
        canvas = torch.zeros(n, 1, 28, 28)
        labels = torch.zeros(n, 10)
        for k in range(g * g):
            r, c = divmod(k, g)
            canvas[:, :, r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] = (
                digits[pick[:, k]] * used[:, k].view(-1, 1, 1, 1)
            )
            rows = used[:, k].nonzero().squeeze(1)
            labels[rows, split.y[pick[rows, k]]] = 1.0
        return Split(canvas.round().to(torch.uint8), labels)


class BinaryDigits(_DerivedDigits):
    """One 0/1 label per digit: is it one of ``positive`` (default: odd against even)."""

    name = "binary_digits"
    task = "multilabel"

    def __init__(self, positive: Sequence[int] = (1, 3, 5, 7, 9), **kwargs) -> None:
        super().__init__(**kwargs)
        self.positive = sorted({int(d) for d in positive})
        if not self.positive or not set(self.positive) <= set(range(10)) or len(self.positive) == 10:
            raise ZooError(f"data.positive must be some (not all) of the digits 0-9; got {list(positive)}")
        self.num_classes = 1
        odd = self.positive == [1, 3, 5, 7, 9]
        self.class_names = ["odd" if odd else "digit in " + "".join(map(str, self.positive))]

    def derive(self, split: Split, name: str) -> Split:
        y = torch.isin(split.y, torch.tensor(self.positive)).float().unsqueeze(1)  # N x 1
        return Split(split.x, y)


class ImbalancedDigits(MNISTTiny):
    """10-way classification whose training split keeps only a fraction ``keep`` of the ``minority`` digits."""

    name = "imbalanced_digits"

    def __init__(self, minority: Sequence[int] = (0, 1, 2, 3, 4), keep: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.minority, self.keep = sorted({int(d) for d in minority}), float(keep)
        if not set(self.minority) <= set(range(10)) or not 0.0 < self.keep <= 1.0:
            raise ZooError(f"data.minority must be digits 0-9 and 0 < data.keep <= 1; got {list(minority)}, {keep}")
        self.class_names = list(DIGITS)

    def load_splits(self) -> dict[str, Split]:
        splits = super().load_splits()
        train = splits["train"]
        gen = torch.Generator().manual_seed(self.split_seed)
        drop = torch.isin(train.y, torch.tensor(self.minority)) & (torch.rand(len(train), generator=gen) >= self.keep)
        splits["train"] = Split(train.x[~drop], train.y[~drop])
        return splits
