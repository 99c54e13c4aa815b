"""Sequence datasets: sequential MNIST, the adding problem, the copy-memory task and character-level text.

All of them are generated or embedded (no download) and held in memory as :class:`~zoo.datamodules.base.Split`
tensors that are moved to the training device once. Each exposes the facts a model and a task are built
from: ``task`` ("classification", "regression", "language_model"), ``num_classes`` (outputs per
prediction), ``in_channels`` (features per step, or the vocabulary size for token inputs) and
``input_shape`` = (T, features).

- ``seq_mnist``: a digit read row by row (28 steps of 28 pixels) or pixel by pixel (784 steps of 1, with
  an optional fixed permutation: psMNIST). Le, Jaitly & Hinton (2015).
- ``adding``: two of T random numbers are marked; the target is their sum. Predicting 1 always gives
  MSE 1/6 ~ 0.167, so only a network that remembers the marked numbers across T steps beats it.
  Hochreiter & Schmidhuber (1997), in the form of Le et al. (2015).
- ``copy``: remember 10 symbols over T blank steps and reproduce them after a delimiter. Arjovsky,
  Shah & Bengio (2016), "Unitary Evolution Recurrent Neural Networks".
- ``char_text``: next-character prediction on any text file (``data.path=``); a public-domain text
  ships with the package.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.datamodules.augment import normalize_uint8
from zoo.datamodules.base import InMemoryDataModule, Split, Transform, hold_out, whole_number
from zoo.datamodules.vision import DIGITS, MNIST_MEAN, MNIST_STD, load_mnist_5k, read_idx
from zoo.errors import ZooError

DEFAULT_TEXT = Path(__file__).parent / "data" / "shakespeare_coriolanus.txt"


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class SequenceDataModule(InMemoryDataModule):
    """Base of the sequence datamodules: inputs need no image normalisation, facts include ``in_channels``."""

    in_channels: int = 1

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("whiten") not in (None, "none", False):
            raise ZooError("data.whiten is for images; sequence datasets take no whitening")
        super().__init__(*args, **kwargs)

    def eval_transform(self) -> Transform:
        return _identity

    def facts(self) -> dict[str, Any]:
        return {**super().facts(), "in_channels": self.in_channels}


# -- sequential MNIST ----------------------------------------------------------------------------
def _full_mnist(root: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
    """The 60,000/10,000 MNIST digits from ``root/MNIST/raw`` (torchvision's layout, read by the vision
    datamodules' ``read_idx``), or None if absent."""
    raw = root / "MNIST" / "raw"
    files = {}
    for key, stem in [("train_x", "train-images-idx3"), ("train_y", "train-labels-idx1"),
                      ("test_x", "t10k-images-idx3"), ("test_y", "t10k-labels-idx1")]:  # fmt: skip
        found = [p for p in (raw / f"{stem}-ubyte", raw / f"{stem}-ubyte.gz") if p.is_file()]
        if not found:
            return None
        files[key] = found[0]
    out = {}
    for split in ("train", "test"):
        x = torch.from_numpy(read_idx(files[f"{split}_x"]).copy())
        y = torch.from_numpy(read_idx(files[f"{split}_y"]).astype(np.int64))
        out[split] = (x, y)
    return out


class SeqMNIST(SequenceDataModule):
    """MNIST digits as sequences: ``mode="rows"`` (T=28, 28 features) or ``"pixel"`` (T=784, 1 feature).

    ``permute=True`` (pixel mode) shuffles the pixel order with a fixed permutation from
    ``permutation_seed``, the same for every image and every run: psMNIST, where neighbouring steps are
    no longer neighbouring pixels. ``source``: ``"auto"`` uses the full MNIST when its files are under
    ``data_dir/MNIST/raw`` and the 5,000 embedded digits otherwise (the same 4,000/500/500 split as
    ``mnist_tiny``); ``"full"`` or ``"embedded"`` insist. ``shift`` > 0 translates training digits by up
    to that many pixels (a batched, on-device augmentation).
    """

    name = "seq_mnist"
    num_classes = 10
    mean, std = MNIST_MEAN, MNIST_STD
    class_names = DIGITS

    def __init__(
        self,
        mode: str = "rows",
        permute: bool = False,
        permutation_seed: int = 0,
        source: str = "auto",
        data_dir: str | None = "data",
        val_size: int = 500,
        test_size: int = 500,
        split_seed: int = 0,
        shift: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ("rows", "pixel"):
            raise ZooError(f"data.mode must be 'rows' or 'pixel'; got {mode!r}")
        if permute and mode != "pixel":
            raise ZooError("data.permute=true needs data.mode=pixel (psMNIST permutes the 784 pixels)")
        if source not in ("auto", "full", "embedded"):
            raise ZooError(f"data.source must be auto, full or embedded; got {source!r}")
        self.mode, self.permute, self.permutation_seed, self.source = mode, permute, permutation_seed, source
        self.data_dir = Path(data_dir) if data_dir else None
        self.val_size, self.test_size, self.split_seed = val_size, test_size, split_seed
        self.shift = whole_number(shift, "data.shift", minimum=0)
        hold_out(5000, {"test": test_size, "val": val_size}, split_seed)  # a bad size fails here, not in setup
        self.input_shape = (28, 28) if mode == "rows" else (784, 1)
        self.in_channels = self.input_shape[1]
        self.used_source = ""

    def load_splits(self) -> dict[str, Split]:
        full = _full_mnist(self.data_dir) if self.data_dir is not None and self.source != "embedded" else None
        if full is None and self.source == "full":
            raise ZooError(
                f"full MNIST not found under {self.data_dir}/MNIST/raw; download it with: python -c "
                f"\"import torchvision; torchvision.datasets.MNIST('{self.data_dir}', download=True)\""
            )
        if full is not None:
            self.used_source = "full"
            (x, y), (x_test, y_test) = full["train"], full["test"]
            self.source_index = index = hold_out(len(x), {"val": self.val_size}, self.split_seed)
            return {"train": Split(x[index["train"]], y[index["train"]]),
                    "val": Split(x[index["val"]], y[index["val"]]), "test": Split(x_test, y_test)}
        self.used_source = "embedded"
        x, y = load_mnist_5k()
        x = x[:, 0]  # N x 28 x 28
        self.source_index = hold_out(len(x), {"test": self.test_size, "val": self.val_size}, self.split_seed)
        return {k: Split(x[i], y[i]) for k, i in self.source_index.items()}

    def permutation(self) -> torch.Tensor | None:
        """The fixed pixel order of psMNIST (None unless ``permute``)."""
        if not self.permute:
            return None
        return torch.randperm(784, generator=torch.Generator().manual_seed(self.permutation_seed))

    def eval_transform(self) -> Transform:
        mean, std, perm, mode = self.mean[0], self.std[0], self.permutation(), self.mode

        def to_sequence(x: torch.Tensor) -> torch.Tensor:
            x = normalize_uint8(x, (mean,), (std,))  # N x 28 x 28
            if mode == "rows":
                return x  # N x T=28 x 28: one row per step
            x = x.reshape(len(x), 784)
            if perm is not None:
                x = x[:, perm.to(x.device)]
            return x.unsqueeze(-1)  # N x T=784 x 1: one pixel per step

        return to_sequence

    def train_transform(self) -> Transform:
        to_sequence, s = self.eval_transform(), self.shift
        if not s:
            return to_sequence

        def shifted(x: torch.Tensor) -> torch.Tensor:
            # Random translation by up to `s` pixels: pad, then crop each digit at its own offset.
            n = len(x)
            padded = torch.nn.functional.pad(x, (s, s, s, s))  # N x 28+2s x 28+2s
            dy, dx = (torch.randint(0, 2 * s + 1, (2, n), device=x.device)).unbind(0)
            rows = (dy[:, None] + torch.arange(28, device=x.device))[:, :, None]  # N x 28 x 1
            cols = (dx[:, None] + torch.arange(28, device=x.device))[:, None, :]  # N x 1 x 28
            return to_sequence(padded[torch.arange(n, device=x.device)[:, None, None], rows, cols])

        return shifted

    def facts(self) -> dict[str, Any]:
        return {**super().facts(), "mode": self.mode, "permute": self.permute, "source": self.used_source}


def _sizes(train: Any, val: Any, test: Any) -> tuple[int, int, int]:
    """Sizes of generated splits: whole numbers >= 1 each (generated data has nothing to hold out of)."""
    return tuple(whole_number(v, f"data.{k}_size") for k, v in (("train", train), ("val", val), ("test", test)))


# -- the adding problem --------------------------------------------------------------------------
def adding_problem(n: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` adding-problem sequences: N x T x 2 inputs (value, marker) and N sums of the two marked values.

    Values are U(0, 1); one marker falls in the first half of the sequence and one in the second.
    """
    if length < 2:
        raise ZooError(f"data.length must be at least 2; got {length}")
    values = torch.rand(n, length, generator=generator)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=generator)
    second = torch.randint(half, length, (n,), generator=generator)
    markers = torch.zeros(n, length)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = torch.stack([values, markers], dim=2)  # N x T x 2
    y = values[rows, first] + values[rows, second]  # N
    return x, y


class Adding(SequenceDataModule):
    """The adding problem with sequences of ``length`` steps; regression with an MSE loss.

    The trivial baseline (always predict 1, the mean of the sum) has MSE Var(U + U') = 1/6 ~ 0.167; it
    is in ``facts()["baseline_mse"]`` (measured on the test split) and logged as ``val/baseline_mse``.
    """

    name = "adding"
    task = "regression"
    num_classes = 1
    in_channels = 2

    def __init__(
        self, length: int = 100, train_size: int = 20000, val_size: int = 1000, test_size: int = 1000,
        data_seed: int = 0, **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.length = whole_number(length, "data.length", minimum=2)
        self.sizes = _sizes(train_size, val_size, test_size)
        self.data_seed = data_seed
        self.input_shape = (self.length, 2)
        self.baseline_mse = 1 / 6

    def load_splits(self) -> dict[str, Split]:
        g = torch.Generator().manual_seed(self.data_seed)
        names = ("train", "val", "test")
        splits = {name: Split(*adding_problem(n, self.length, g)) for name, n in zip(names, self.sizes)}
        self.baseline_mse = float(((splits["test"].y - 1.0) ** 2).mean())
        return splits

    def facts(self) -> dict[str, Any]:
        self.setup()
        return {**super().facts(), "length": self.length, "baseline_mse": self.baseline_mse}


# -- the copy-memory task ------------------------------------------------------------------------
BLANK, DELIMITER = 0, 9


def copy_task(
    n: int, blanks: int, generator: torch.Generator, copy_length: int = 10, symbols: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` copy-task sequences of length ``blanks + 2 * copy_length``, as (inputs, targets) N x L tokens.

    Input: ``copy_length`` symbols from 1..8, ``blanks - 1`` blanks (0), the delimiter (9), then
    ``copy_length`` blanks. Target: blanks until the delimiter's step, then the symbols, in order.
    """
    if blanks < 1:
        raise ZooError(f"data.length (blank steps) must be at least 1; got {blanks}")
    total = blanks + 2 * copy_length
    seq = torch.randint(1, symbols + 1, (n, copy_length), generator=generator)
    x = torch.full((n, total), BLANK, dtype=torch.long)
    y = torch.full((n, total), BLANK, dtype=torch.long)
    x[:, :copy_length] = seq
    x[:, copy_length + blanks - 1] = DELIMITER
    y[:, -copy_length:] = seq
    return x, y


class Copy(SequenceDataModule):
    """The copy-memory task with ``length`` blank steps: classify every step into blank or one of 8 symbols.

    Inputs are tokens from 10 symbols (blank, 8 data symbols, delimiter), so ``in_channels`` = 10 and the
    recurrent models one-hot or embed them and predict at every step (N x 9 x T). The memoryless
    baseline, blanks then uniform guesses, has cross-entropy ``10 log 8 / (T + 20)`` (``baseline_loss``).
    """

    name = "copy"
    num_classes = 9
    in_channels = 10
    class_names = ["_"] + [str(i) for i in range(1, 9)]

    def __init__(
        self, length: int = 100, copy_length: int = 10, train_size: int = 10000, val_size: int = 500,
        test_size: int = 500, data_seed: int = 0, **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.length = whole_number(length, "data.length")
        self.copy_length = whole_number(copy_length, "data.copy_length")
        self.sizes, self.data_seed = _sizes(train_size, val_size, test_size), data_seed
        self.input_shape = (self.length + 2 * self.copy_length, self.in_channels)

    def load_splits(self) -> dict[str, Split]:
        g = torch.Generator().manual_seed(self.data_seed)
        return {
            name: Split(*copy_task(n, self.length, g, self.copy_length))
            for name, n in zip(("train", "val", "test"), self.sizes)
        }

    def facts(self) -> dict[str, Any]:
        baseline = self.copy_length * math.log(8) / (self.length + 2 * self.copy_length)
        return {**super().facts(), "length": self.length, "baseline_loss": baseline}


# -- character-level text ------------------------------------------------------------------------
def read_text(path: Path) -> str:
    """A text file's characters; a binary file (not UTF-8, or with NUL bytes) ends in one line that names
    the first offending byte, never the file's contents."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ZooError(f"{path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); data=char_text "
                       f"needs a text file") from None
    if "\x00" in text:
        raise ZooError(f"{path} looks binary (a NUL byte at offset {text.index(chr(0))}); data=char_text needs a "
                       f"text file")
    return text


class CharText(SequenceDataModule):
    """Next-character prediction on a text file: windows of ``seq_len`` characters, targets shifted by one.

    The vocabulary is the sorted set of characters of the whole file (stored in ``class_names``, so a
    checkpoint can encode prompts and decode samples). The text is split into train/val/test in that
    order (the last ``val_fraction`` and ``test_fraction`` of the file are held out); training windows
    are shuffled, and ``bptt`` (truncated backpropagation through time, in steps; None = whole window) is
    read by the language-model task.
    """

    name = "char_text"
    task = "language_model"

    def __init__(
        self,
        path: str | None = None,
        seq_len: int = 128,
        bptt: int | None = None,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.path = Path(path) if path else DEFAULT_TEXT
        if not self.path.is_file():
            raise ZooError(f"text file not found: {self.path} (pass data.path=FILE with any UTF-8 text)")
        self.seq_len = seq_len = whole_number(seq_len, "data.seq_len")
        self.bptt = None if bptt is None else whole_number(bptt, "data.bptt")
        for key, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1:
                raise ZooError(f"data.{key} must be a fraction in (0, 1); got {f!r}")
        if val_fraction + test_fraction >= 1:
            raise ZooError(f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction} leave no "
                           f"training text")
        self.fractions = (val_fraction, test_fraction)
        self.text = read_text(self.path)
        if len(self.text) < 3 * (seq_len + 1):
            raise ZooError(f"{self.path} has {len(self.text)} characters; data.seq_len={seq_len} needs more")
        self.vocab = sorted(set(self.text))
        self.stoi = {c: i for i, c in enumerate(self.vocab)}
        self.class_names = list(self.vocab)
        self.num_classes = self.in_channels = len(self.vocab)
        self.input_shape = (seq_len, len(self.vocab))

    def encode(self, text: str) -> torch.Tensor:
        unknown = sorted(set(text) - set(self.stoi))
        if unknown:
            raise ZooError(f"characters not in the vocabulary of {self.path.name}: {''.join(unknown)!r}")
        return torch.tensor([self.stoi[c] for c in text], dtype=torch.long)

    def decode(self, tokens: torch.Tensor | list[int]) -> str:
        return "".join(self.vocab[int(i)] for i in tokens)

    def _windows(self, tokens: torch.Tensor) -> Split:
        n = (len(tokens) - 1) // self.seq_len
        if n < 1:
            raise ZooError(f"a split of {len(tokens)} characters is shorter than data.seq_len + 1 = {self.seq_len + 1}")
        x = tokens[: n * self.seq_len].view(n, self.seq_len)
        y = tokens[1 : n * self.seq_len + 1].view(n, self.seq_len)
        return Split(x, y)

    def load_splits(self) -> dict[str, Split]:
        tokens = self.encode(self.text)
        n_val, n_test = (max(self.seq_len + 1, int(len(tokens) * f)) for f in self.fractions)
        n_train = len(tokens) - n_val - n_test
        bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, len(tokens))}
        # the characters each split's inputs and targets are cut from: disjoint stretches of the file
        self.source_index = {name: torch.arange(a, b) for name, (a, b) in bounds.items()}
        return {name: self._windows(tokens[a:b]) for name, (a, b) in bounds.items()}

    def facts(self) -> dict[str, Any]:
        return {**super().facts(), "seq_len": self.seq_len, "bptt": self.bptt}
