"""Splits never leak (issue 20 item 1): for every datamodule and every kind of valid split setting (the
defaults, counts, fractions, the smallest and the largest held-out sets), no validation or test sample is
also a training sample, by index (where a datamodule cuts its splits from one source, the index sets are
disjoint and cover it) and by content (no held-out sample's bytes equal a training sample's). Invalid
settings are refused with one line instead of wrapping a slice or leaving a split empty."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import torch
from fake_data import write_cifar10, write_cifar100, write_imagefolder, write_mnist, write_svhn

from zoo.datamodules.base import DataModule, hold_out
from zoo.datamodules.folder import ImageFolder
from zoo.datamodules.sequence import Adding, CharText, Copy, SeqMNIST
from zoo.datamodules.vision import CIFAR10, CIFAR100, KMNIST, MNIST, SVHN, Digits, FashionMNIST, MNISTTiny
from zoo.errors import ZooError


def _digests(x: torch.Tensor) -> list[str]:
    return [hashlib.sha1(row.contiguous().numpy().tobytes()).hexdigest() for row in x.cpu()]


def _assert_no_leak(dm: DataModule, sizes: dict[str, int] | None = None) -> None:
    dm.setup()
    if isinstance(dm, ImageFolder):  # content: the bytes of the image files each split holds
        def files(split: str) -> list[str]:
            base = dm.datasets[split].base
            indices = base.indices if hasattr(base, "indices") else range(len(base))
            folder = base.dataset if hasattr(base, "dataset") else base
            return [hashlib.sha1(Path(folder.samples[i][0]).read_bytes()).hexdigest() for i in indices]

        content = {s: files(s) for s in ("train", "val", "test")}
    else:
        content = {s: _digests(dm.splits[s].x) for s in ("train", "val", "test")}
    train = set(content["train"])
    for held in ("val", "test"):
        assert content[held], f"{held} split is empty"
        assert not train & set(content[held]), f"{held} samples also in training"
    index = dm.source_index
    if index:  # the splits cut from one source: disjoint index sets that cover it
        sets = {k: set(v.tolist()) for k, v in index.items()}
        assert sum(len(v) for v in index.values()) == len(set().union(*sets.values()))
        for held in set(sets) - {"train"}:
            assert not sets["train"] & sets[held], f"{held} indices also in training"
    for split, n in (sizes or {}).items():
        got = len(dm.datasets[split]) if isinstance(dm, ImageFolder) else len(dm.splits[split])
        assert got == n, (split, got, n)


@pytest.mark.parametrize("kwargs,sizes", [
    ({}, {"train": 4000, "val": 500, "test": 500}),
    ({"val_size": 0.1, "test_size": 0.1}, {"test": 500, "val": 450, "train": 4050}),
    ({"val_size": 1, "test_size": 1}, {"val": 1, "test": 1, "train": 4998}),
    ({"val_size": 4400, "test_size": 500}, {"train": 100}),
    ({"val_size": 300, "test_size": 0.5, "split_seed": 3}, {"test": 2500, "val": 300}),
])
def test_mnist_tiny(kwargs: dict[str, Any], sizes: dict[str, int]) -> None:
    _assert_no_leak(MNISTTiny(**kwargs), sizes)


@pytest.mark.parametrize("kwargs", [{}, {"val_size": 10, "test_size": 10}, {"val_size": 0.5, "test_size": 0.3},
                                    {"val_size": 1, "test_size": 1795, "image_size": 8}])
def test_digits(kwargs: dict[str, Any]) -> None:
    _assert_no_leak(Digits(**kwargs))


@pytest.mark.parametrize("cls,folder", [(MNIST, "MNIST"), (FashionMNIST, "FashionMNIST"), (KMNIST, "KMNIST")])
@pytest.mark.parametrize("val_size", [0.1, 1, 25, 59])
def test_mnist_family(tmp_path: Path, cls: type, folder: str, val_size: float | int) -> None:
    write_mnist(tmp_path, folder, n_train=60, n_test=20)
    _assert_no_leak(cls(data_dir=tmp_path, val_size=val_size), {"test": 20})


@pytest.mark.parametrize("val_size", [0.1, 0.9, 1, 99])
def test_cifar_and_svhn(tmp_path: Path, val_size: float | int) -> None:
    write_cifar10(tmp_path)
    write_cifar100(tmp_path)
    write_svhn(tmp_path, n_train=100)
    for cls in (CIFAR10, CIFAR100, SVHN):
        _assert_no_leak(cls(data_dir=tmp_path, val_size=val_size))


@pytest.mark.parametrize("kwargs", [{}, {"val_size": 100, "test_size": 0.2}, {"val_size": 1, "test_size": 1}])
def test_seq_mnist_embedded(kwargs: dict[str, Any]) -> None:
    _assert_no_leak(SeqMNIST(source="embedded", **kwargs))


@pytest.mark.parametrize("val_size", [0.25, 1, 59])
def test_seq_mnist_full(tmp_path: Path, val_size: float | int) -> None:
    write_mnist(tmp_path, "MNIST", n_train=60, n_test=20)
    _assert_no_leak(SeqMNIST(source="full", data_dir=str(tmp_path), val_size=val_size))


@pytest.mark.parametrize("layout,kwargs", [("val", {}), ("val", {"val_size": 0.25}), ("val", {"val_size": 1}),
                                           ("no_val", {}), ("test", {"val_size": 5})])
def test_imagefolder(tmp_path: Path, layout: str, kwargs: dict[str, Any]) -> None:
    write_imagefolder(tmp_path, n_train=6, n_val=2)
    if layout == "no_val":
        (tmp_path / "val").rename(tmp_path / "elsewhere")
    if layout == "test":
        write_imagefolder(tmp_path / "t", n_train=1, n_val=2, seed=5)
        (tmp_path / "t" / "val").rename(tmp_path / "test")
    _assert_no_leak(ImageFolder(data_dir=tmp_path, image_size=24, num_workers=0, **kwargs))


@pytest.mark.parametrize("fractions", [(0.05, 0.05), (0.2, 0.3), (0.001, 0.001)])
def test_char_text(fractions: tuple[float, float]) -> None:
    dm = CharText(val_fraction=fractions[0], test_fraction=fractions[1], seq_len=64)
    _assert_no_leak(dm)
    ranges = {k: (int(v.min()), int(v.max())) for k, v in dm.source_index.items()}
    assert ranges["train"][1] < ranges["val"][0] and ranges["val"][1] < ranges["test"][0]


def test_generated_tasks() -> None:
    _assert_no_leak(Adding(length=50, train_size=2000, val_size=200, test_size=200))
    _assert_no_leak(Copy(length=20, train_size=2000, val_size=200, test_size=200))


@pytest.mark.parametrize("kwargs,match", [
    ({"val_size": 4600}, "leave no training samples"),  # today: a negative count that wraps the slice
    ({"val_size": 5000}, "leave no training samples"),
    ({"val_size": 2.0}, "a count .* or a fraction in \\(0, 1\\); got 2.0"),
    ({"val_size": 0}, "got 0"),
    ({"val_size": -3}, "got -3"),
    ({"test_size": True}, "data.test_size .* got True"),
    ({"val_size": "abc"}, "got 'abc'"),
    ({"val_size": 0.00001}, "no sample at all"),
])
def test_invalid_split_sizes_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ZooError, match=match):
        MNISTTiny(**kwargs)


def test_invalid_sizes_of_the_other_datamodules_are_refused(tmp_path: Path) -> None:
    write_mnist(tmp_path, "MNIST", n_train=60, n_test=20)
    with pytest.raises(ZooError, match="data.val_size"):
        MNIST(data_dir=tmp_path, val_size=60).setup()
    with pytest.raises(ZooError, match="data.val_size"):
        MNIST(data_dir=tmp_path, val_size=0.0).setup()
    with pytest.raises(ZooError, match="leave no training samples"):
        Digits(val_size=1, test_size=1796)
    with pytest.raises(ZooError, match="data.val_size"):
        SeqMNIST(source="embedded", val_size=-1)
    with pytest.raises(ZooError, match="data.val_fraction"):
        CharText(val_fraction=0.0)
    with pytest.raises(ZooError, match="leave no training text"):
        CharText(val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ZooError, match="data.train_size"):
        Adding(train_size=0)
    with pytest.raises(ZooError, match="data.test_size"):
        Copy(test_size=2.5)


def test_hold_out_cuts_every_index_once_and_fractions_are_of_what_is_left() -> None:
    parts = hold_out(1000, {"test": 0.2, "val": 0.25}, seed=0)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [600, 200, 200]
    assert torch.equal(torch.cat([parts["train"], parts["val"], parts["test"]]).sort().values, torch.arange(1000))
    # the layout splits have always had: the seeded permutation cut as train, val, test
    perm = torch.randperm(1000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(parts["train"], perm[:600]) and torch.equal(parts["test"], perm[800:])
