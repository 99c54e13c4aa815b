"""The data cases of issue 20 items 5 and 6: each mistake or degenerate file is refused with one line naming
it, in the datamodule (fast tests) and through train.py (one ``error:`` line, exit 2, no traceback)."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, run_script
from fake_data import write_cifar10, write_imagefolder, write_mnist

from zoo.datamodules.folder import ImageFolder
from zoo.datamodules.sequence import CharText
from zoo.datamodules.vision import CIFAR10, MNIST, Digits, MNISTTiny
from zoo.errors import ZooError


def _cifar_labels_as_strings(root: Path) -> None:
    write_cifar10(root)
    path = root / "cifar-10-batches-py" / "data_batch_2"
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    entry["labels"] = [str(v) for v in entry["labels"]]
    path.write_bytes(pickle.dumps(entry, protocol=2))


def _mnist_header_overflow(root: Path) -> None:
    write_mnist(root, "MNIST", gz=False)
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    data = path.read_bytes()
    path.write_bytes(data[:4] + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1) + data[16:])


def _mnist_without_images(root: Path) -> None:
    write_mnist(root, "MNIST", n_train=0, n_test=20, gz=False)


def _binary_text(root: Path) -> Path:
    path = root / "blob.bin"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    return path


def _corrupt_jpeg(root: Path) -> Path:
    write_imagefolder(root, fmt="jpg")
    bad = sorted((root / "train" / "dog").glob("*.jpg"))[1]
    bad.write_bytes(bad.read_bytes()[:60])
    return bad


def test_cifar_labels_stored_as_strings_are_refused(tmp_path: Path) -> None:
    _cifar_labels_as_strings(tmp_path)
    with pytest.raises(ZooError, match=r"data_batch_2 is corrupt .*'labels' are <U1 .*not a list of integer"):
        CIFAR10(data_dir=tmp_path).setup()


def test_mnist_header_whose_dimensions_overflow_is_refused(tmp_path: Path) -> None:
    _mnist_header_overflow(tmp_path)
    with pytest.raises(ZooError, match=r"train-images-idx3-ubyte is corrupt .*header says \(4294967295, "):
        MNIST(data_dir=tmp_path).setup()


def test_mnist_file_with_no_images_is_refused(tmp_path: Path) -> None:
    _mnist_without_images(tmp_path)
    with pytest.raises(ZooError, match="hold no training images"):
        MNIST(data_dir=tmp_path).setup()


@pytest.mark.parametrize("value", ["abc", 4, True, 2.5])
def test_digits_image_size_must_be_a_whole_number_of_at_least_8(value: object) -> None:
    with pytest.raises(ZooError, match=f"data.image_size .* got {value!r}"):
        Digits(image_size=value)
    assert Digits(image_size=16.0).image_size == 16  # a whole float is still a whole number


def test_a_binary_file_given_as_text_is_one_short_line(tmp_path: Path) -> None:
    with pytest.raises(ZooError) as e:
        CharText(path=str(_binary_text(tmp_path)))
    assert "is not UTF-8 text" in str(e.value) and len(str(e.value)) < 300
    zeros = tmp_path / "zeros.bin"
    zeros.write_bytes(bytes(2000))  # valid UTF-8, but NUL bytes: binary
    with pytest.raises(ZooError, match="looks binary"):
        CharText(path=str(zeros))


@pytest.mark.parametrize("key,value", [("batch_size", True), ("batch_size", 0), ("batch_size", "abc"),
                                       ("eval_batch_size", False), ("batch_size", 1.5)])
def test_batch_sizes_must_be_whole_positive_numbers_not_bools(key: str, value: object) -> None:
    with pytest.raises(ZooError, match=f"data.{key} must be a whole number >= 1; got {value!r}"):
        MNISTTiny(**{key: value})


def test_an_empty_split_is_refused_whatever_made_it() -> None:
    from zoo.datamodules.base import InMemoryDataModule, Split

    class Empty(InMemoryDataModule):
        def load_splits(self) -> dict[str, Split]:
            import torch

            x = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
            return {"train": Split(x, torch.zeros(4, dtype=torch.long)), "val": Split(x[:0], torch.zeros(0)),
                    "test": Split(x, torch.zeros(4, dtype=torch.long))}

    with pytest.raises(ZooError, match="the val split is empty"):
        Empty().setup()


def test_corrupt_jpeg_is_named(tmp_path: Path) -> None:
    bad = _corrupt_jpeg(tmp_path)
    dm = ImageFolder(data_dir=tmp_path, image_size=24, num_workers=0, batch_size=100)
    with pytest.raises(ZooError, match=f"cannot read image {bad}"):
        next(iter(dm.train_dataloader()))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["cifar_strings", "mnist_overflow", "mnist_empty", "digits_abc", "binary_text",
                                  "corrupt_jpeg_workers", "batch_size_true"])
def test_through_train_py_each_is_one_error_line_and_exit_2(tmp_path: Path, case: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    args = {
        "cifar_strings": lambda: (_cifar_labels_as_strings(data), ["data=cifar10", f"data.data_dir={data}"])[1],
        "mnist_overflow": lambda: (_mnist_header_overflow(data), ["data=mnist", f"data.data_dir={data}"])[1],
        "mnist_empty": lambda: (_mnist_without_images(data), ["data=mnist", f"data.data_dir={data}"])[1],
        "digits_abc": lambda: ["data=digits", "data.image_size=abc"],
        "binary_text": lambda: ["data=char_text", f"data.path={_binary_text(data)}", "model=lstm"],
        "corrupt_jpeg_workers": lambda: (_corrupt_jpeg(data), ["data=imagefolder", f"data.data_dir={data}",
                                                               "data.image_size=32", "data.num_workers=2",
                                                               "data.batch_size=4"])[1],
        "batch_size_true": lambda: ["data.batch_size=true"],
    }[case]()
    # in this process, but the case whose error is met in DataLoader workers: what they print is theirs
    run = run_script if case == "corrupt_jpeg_workers" else run_cli
    r = run("train.py", *args, "trainer.max_epochs=1", "trainer.accelerator=cpu",
            f"hydra.run.dir={tmp_path / 'run'}", timeout=600)
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert r.returncode == 2, r.stderr[-3000:]
    # the last line is the one error line; a failure met while training (the JPEG) may follow Lightning's own
    # warnings, never a traceback (today: the worker's)
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:], r.stderr[-3000:]
    assert "Traceback" not in r.stderr and len(errors[0]) < 400
    assert case == "corrupt_jpeg_workers" or len(lines) == 1, r.stderr[-3000:]
