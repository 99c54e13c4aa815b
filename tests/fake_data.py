"""Small files in the exact on-disk formats torchvision reads, so the real reading code runs offline.

Each writer puts its files where ``torchvision.datasets.<Name>(root, download=True)`` would, and
returns what it wrote as uint8 ``(N, C, H, W)`` arrays, int64 labels and the class names, so a test
can check that images, labels and names round-trip through a datamodule:

    write_mnist(root, "MNIST")     -> root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    write_cifar10(root)            -> root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}
    write_cifar100(root)           -> root/cifar-100-python/{train,test,meta}
    write_svhn(root)               -> root/{train,test}_32x32.mat   (labels 1..10, 10 meaning digit 0)
    write_imagefolder(root)        -> root/{train,val}/<class>/<i>.png|.jpg

Images are random but class-dependent (a per-class brightness offset), so a few steps of training
can tell the classes apart.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FakeSplit = tuple[np.ndarray, np.ndarray]  # uint8 (N, C, H, W) images, int64 (N,) labels


def _images(rng: np.random.Generator, labels: np.ndarray, shape: tuple[int, int, int], num_classes: int) -> np.ndarray:
    """uint8 images whose mean brightness depends on the class, plus noise."""
    base = (labels.astype(np.float64) + 0.5) / num_classes * 200.0
    noise = rng.integers(0, 56, size=(len(labels), *shape))
    return (base[:, None, None, None] + noise).clip(0, 255).astype(np.uint8)


def _split(rng: np.random.Generator, n: int, shape: tuple[int, int, int], num_classes: int) -> FakeSplit:
    y = np.arange(n, dtype=np.int64) % num_classes  # every class present once n >= num_classes
    rng.shuffle(y)
    return _images(rng, y, shape, num_classes), y


# -- MNIST family: idx-ubyte ------------------------------------------------------------------
def idx_bytes(array: np.ndarray) -> bytes:
    """The idx format: magic (0, 0, dtype 0x08 = ubyte, ndim), big-endian int32 dims, then raw bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_mnist(root: str | Path, name: str = "MNIST", n_train: int = 60, n_test: int = 20, gz: bool = True,
                seed: int = 0) -> dict[str, Any]:
    """MNIST, FashionMNIST or KMNIST (``name``) files under ``root/<name>/raw``, gzipped or not."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x, y = _split(rng, n, (1, 28, 28), 10)
        for kind, arr in (("images-idx3", x[:, 0]), ("labels-idx1", y.astype(np.uint8))):
            path = raw / f"{prefix}-{kind}-ubyte"
            data = idx_bytes(arr)
            if gz:
                with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
                    f.write(data)
            else:
                path.write_bytes(data)
        out[split] = (x, y)
    return out


# -- CIFAR: python pickles --------------------------------------------------------------------
def _pickle(path: Path, obj: dict[str, Any]) -> None:
    """Protocol 2, with numpy's arrays under the module name the original (numpy 1.x era) files use."""
    data = pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    path.write_bytes(data)


def _cifar_rows(x: np.ndarray) -> np.ndarray:
    """(N, 3, 32, 32) -> (N, 3072): the red plane, then green, then blue, each row-major."""
    return x.reshape(len(x), 3 * 32 * 32)


def write_cifar10(root: str | Path, per_batch: int = 20, n_test: int = 20, seed: int = 0) -> dict[str, Any]:
    """``root/cifar-10-batches-py``: five training batches of ``per_batch`` images, a test batch, the meta."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for b in range(1, 6):
        x, y = _split(rng, per_batch, (3, 32, 32), 10)
        _pickle(base / f"data_batch_{b}", {"batch_label": f"training batch {b} of 5", "labels": y.tolist(),
                                           "data": _cifar_rows(x), "filenames": [f"{i}.png" for i in range(len(y))]})
        xs.append(x)
        ys.append(y)
    xt, yt = _split(rng, n_test, (3, 32, 32), 10)
    _pickle(base / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": yt.tolist(),
                                  "data": _cifar_rows(xt), "filenames": [f"{i}.png" for i in range(len(yt))]})
    _pickle(base / "batches.meta", {"label_names": CIFAR10_CLASSES, "num_cases_per_batch": per_batch,
                                    "num_vis": 3072})
    return {"train": (np.concatenate(xs), np.concatenate(ys)), "test": (xt, yt), "classes": CIFAR10_CLASSES}


def cifar100_classes() -> tuple[list[str], list[str]]:
    """Placeholder fine (100) and coarse (20) names, sorted as in the real meta file."""
    return [f"fine_{i:02d}" for i in range(100)], [f"coarse_{i:02d}" for i in range(20)]


def write_cifar100(root: str | Path, n_train: int = 200, n_test: int = 100, seed: int = 0) -> dict[str, Any]:
    """``root/cifar-100-python/{train,test,meta}`` with fine and coarse labels."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "cifar-100-python"
    base.mkdir(parents=True, exist_ok=True)
    fine, coarse = cifar100_classes()
    out: dict[str, Any] = {"classes": fine}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = _split(rng, n, (3, 32, 32), 100)
        _pickle(base / split, {"filenames": [f"{i}.png" for i in range(n)], "batch_label": f"{split} batch 1 of 1",
                               "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist(), "data": _cifar_rows(x)})
        out[split] = (x, y)
    _pickle(base / "meta", {"fine_label_names": fine, "coarse_label_names": coarse})
    return out


# -- SVHN: MATLAB .mat ------------------------------------------------------------------------
def write_svhn(root: str | Path, n_train: int = 40, n_test: int = 20, seed: int = 0) -> dict[str, Any]:
    """``root/{train,test}_32x32.mat``: ``X`` (32, 32, 3, N) uint8 and ``y`` (N, 1) with 10 for the digit 0."""
    import scipy.io

    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = _split(rng, n, (3, 32, 32), 10)
        mat_y = np.where(y == 0, 10, y).astype(np.uint8).reshape(-1, 1)
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": mat_y})
        out[split] = (x, y)
    return out


# -- ImageFolder: PNG / JPEG ------------------------------------------------------------------
def write_imagefolder(root: str | Path, classes: tuple[str, ...] = ("cat", "dog", "fish"), n_train: int = 4,
                      n_val: int = 2, size: tuple[int, int] = (40, 48), fmt: str = "png",
                      seed: int = 0) -> dict[str, Any]:
    """``root/{train,val}/<class>/<i>.<fmt>``: ``n_train``/``n_val`` RGB images per class, ``size`` = (H, W).

    Returns the images as written (JPEG decodes only approximately to them), labels by sorted class name.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    names = sorted(classes)
    out: dict[str, Any] = {"classes": names}
    for split, per_class in (("train", n_train), ("val", n_val)):
        y = np.repeat(np.arange(len(names), dtype=np.int64), per_class)
        x = _images(rng, y, (3, *size), len(names))
        counts = [0] * len(names)
        for img, label in zip(x, y):
            folder = root / split / names[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.transpose(1, 2, 0)).save(folder / f"{counts[label]:04d}.{fmt}")
            counts[label] += 1
        out[split] = (x, y)
    return out
