"""Sequence datamodules and tasks: generated targets, layouts, vocabulary, sampling, and train.py/eval.py runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli
from zoo.datamodules.sequence import DEFAULT_TEXT, Adding, CharText, Copy, SeqMNIST, adding_problem, copy_task
from zoo.datamodules.vision import load_mnist_5k
from zoo.errors import ZooError
from zoo.training.tasks import LanguageModelTask, SequenceRegressionTask


def test_adding_problem_targets_and_baseline() -> None:
    x, y = adding_problem(20000, 50, torch.Generator().manual_seed(0))
    assert x.shape == (20000, 50, 2) and y.shape == (20000,)
    markers = x[..., 1]
    assert torch.equal(markers.sum(1), torch.full((20000,), 2.0))
    assert torch.all(markers[:, :25].sum(1) == 1) and torch.all(markers[:, 25:].sum(1) == 1)  # one per half
    torch.testing.assert_close(y, (x[..., 0] * markers).sum(1))  # the sum of the two marked values
    assert abs(((y - 1) ** 2).mean().item() - 1 / 6) < 0.005  # predicting 1: Var(U + U') = 1/6
    dm = Adding(length=30, train_size=8, val_size=4, test_size=2000, batch_size=4)
    facts = dm.facts()
    assert facts["task"] == "regression" and facts["input_shape"] == [30, 2] and facts["in_channels"] == 2
    assert abs(facts["baseline_mse"] - 1 / 6) < 0.02


def test_copy_task_layout() -> None:
    x, y = copy_task(5, blanks=7, generator=torch.Generator().manual_seed(0), copy_length=3)
    assert x.shape == y.shape == (5, 7 + 6)
    symbols = x[:, :3]
    assert torch.all((symbols >= 1) & (symbols <= 8))
    assert torch.all(x[:, 3:9] == 0) and torch.all(x[:, 9] == 9) and torch.all(x[:, 10:] == 0)  # delimiter at 3+7-1
    assert torch.all(y[:, :10] == 0) and torch.equal(y[:, 10:], symbols)  # recalled after the delimiter
    facts = Copy(length=20, batch_size=2).facts()
    assert facts["num_classes"] == 9 and facts["in_channels"] == 10 and facts["input_shape"] == [40, 10]
    assert facts["baseline_loss"] == pytest.approx(10 * math.log(8) / 40)


def test_seq_mnist_rows_pixels_and_permutation() -> None:
    rows = SeqMNIST(mode="rows", batch_size=8, data_dir=None)
    pixels = SeqMNIST(mode="pixel", batch_size=8, data_dir=None)
    perm = SeqMNIST(mode="pixel", permute=True, batch_size=8, data_dir=None)
    rows.setup()
    for dm in (pixels, perm):  # the same digits; reading the embedded table once keeps the test fast
        dm.splits = rows.splits
    xr, yr = next(iter(rows.val_dataloader()))
    xp, yp = next(iter(pixels.val_dataloader()))
    xq, _ = next(iter(perm.val_dataloader()))
    assert xr.shape == (8, 28, 28) and xp.shape == (8, 784, 1) and torch.equal(yr, yp)
    torch.testing.assert_close(xp.view(8, 784), xr.reshape(8, 784))  # pixel order = rows concatenated
    order = perm.permutation()
    assert torch.equal(order.sort().values, torch.arange(784)) and torch.equal(order, perm.permutation())
    torch.testing.assert_close(xq.view(8, 784), xp.view(8, 784)[:, order])
    # The embedded split is mnist_tiny's: the first validation digits are the same images.
    images, labels = load_mnist_5k()
    assert rows.facts()["source"] == "embedded" and len(rows.splits["train"]) == 4000
    assert any(torch.equal(rows.splits["val"].x[0], img[0]) for img in images[labels == rows.splits["val"].y[0]])
    shifted = SeqMNIST(mode="rows", batch_size=8, data_dir=None, shift=2)
    shifted.splits = rows.splits
    assert next(iter(shifted.train_dataloader()))[0].shape == (8, 28, 28)
    with pytest.raises(ZooError, match="permute"):
        SeqMNIST(mode="rows", permute=True)


def test_seq_mnist_reads_full_mnist_files(tmp_path: Path) -> None:
    from tests.fake_data import write_mnist

    write_mnist(tmp_path, "MNIST", n_train=60, n_test=20)
    dm = SeqMNIST(data_dir=str(tmp_path), val_size=10, batch_size=4)
    dm.setup()
    assert dm.facts()["source"] == "full"
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [50, 10, 20]
    with pytest.raises(ZooError, match="leave no training samples"):
        SeqMNIST(data_dir=str(tmp_path), val_size=500).setup()
    with pytest.raises(ZooError, match="MNIST/raw"):
        SeqMNIST(data_dir=str(tmp_path / "nowhere"), source="full").setup()


def test_char_text_vocabulary_round_trip(tmp_path: Path) -> None:
    text = "hello world, hello zoo.\n" * 20
    path = tmp_path / "t.txt"
    path.write_text(text)
    dm = CharText(path=str(path), seq_len=10, batch_size=4)
    assert dm.vocab == sorted(set(text)) and dm.num_classes == dm.in_channels == len(set(text))
    assert dm.decode(dm.encode(text)) == text
    dm.setup()
    x, y = dm.splits["train"].x, dm.splits["train"].y
    assert x.shape[1] == 10 and torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
    assert dm.decode(torch.cat([x[0], y[0, -1:]])) == text[:11]
    assert dm.facts()["class_names"] == dm.vocab and dm.task == "language_model"
    with pytest.raises(ZooError, match="not found"):
        CharText(path=str(tmp_path / "missing.txt"))
    with pytest.raises(ZooError, match="vocabulary"):
        dm.encode("HELLO")
    assert DEFAULT_TEXT.is_file() and len(CharText(seq_len=64).text) > 10000  # shipped with the package


def _lm_task(bptt: int | None = None, vocab: list[str] | None = None) -> LanguageModelTask:
    vocab = vocab or list("abc \n")
    return LanguageModelTask(
        model={"name": "lstm", "hidden_size": 8, "embedding_dim": 8, "tie_weights": True},
        num_classes=len(vocab),
        in_channels=len(vocab),
        optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3},
        data={"config": {"bptt": bptt}, "facts": {"class_names": vocab}},
    )


def test_language_model_sampling_and_truncated_bptt() -> None:
    torch.manual_seed(0)
    task = _lm_task()
    text = task.sample("ab", length=30, temperature=1.0, generator=torch.Generator().manual_seed(1))
    assert text.startswith("ab") and len(text) == 32 and set(text) <= set("abc \n")
    again = task.sample("ab", length=30, temperature=1.0, generator=torch.Generator().manual_seed(1))
    assert text == again  # seeded
    assert task.sample("ab", 10, temperature=0) == task.sample("ab", 10, temperature=0)  # greedy
    with pytest.raises(ZooError, match="vocabulary"):
        task.sample("xyz", 5)
    # Truncated BPTT: the same loss value (the state still flows forward), a different gradient.
    x = torch.randint(0, 5, (3, 12))
    y = torch.randint(0, 5, (3, 12))
    full, truncated = _lm_task(), _lm_task(bptt=4)
    truncated.load_state_dict(full.state_dict())
    losses, grads = [], []
    for task in (full, truncated):
        task.log = lambda *a, **k: None  # no trainer attached
        loss = task.training_step((x, y), 0)
        loss.backward()
        losses.append(loss.detach())
        grads.append(task.net.rnn.weight_hh_l0.grad.clone())
    torch.testing.assert_close(losses[0], losses[1], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(grads[0], grads[1])
    with pytest.raises(ZooError, match="bidirectional"):
        LanguageModelTask(
            model={"name": "lstm", "bidirectional": True}, num_classes=5, in_channels=5,
            optimizer={"_target_": "torch.optim.Adam", "_partial_": True},
        )  # fmt: skip


def test_regression_task_defaults_to_mse_and_refuses_a_classification_loss() -> None:
    common = {"model": {"name": "gru", "hidden_size": 4}, "num_classes": 1, "in_channels": 2,
              "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True}}  # fmt: skip
    for loss in ("torch.nn.CrossEntropyLoss", "zoo.training.losses.CrossEntropyLoss", "zoo.training.losses.FocalLoss"):
        with pytest.raises(ZooError, match="is a classification loss .* regression: choose loss=mse"):
            SequenceRegressionTask(**common, loss={"_target_": loss})
    assert isinstance(SequenceRegressionTask(**common, loss={"_target_": "torch.nn.L1Loss"}).criterion, torch.nn.L1Loss)
    task = SequenceRegressionTask(**common)
    x = torch.randn(3, 5, 2)
    assert task._predict(x, torch.zeros(3)).shape == (3,)


@pytest.mark.slow
def test_train_each_sequence_config_then_sample_text(tmp_path: Path) -> None:
    """A few steps of every sequence data config in one multirun, then eval.py samples from the LM checkpoint."""
    datas = ["seq_mnist", "adding", "copy", "char_text"]
    result = run_cli(
        "train.py", "-m", f"data={','.join(datas)}", "model=lstm", "model.hidden_size=8",
        "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1", "trainer.gradient_clip_val=1.0", "logger=[]", "callbacks.lr_monitor=null",
        "data.batch_size=8", f"hydra.sweep.dir={tmp_path}", "hydra.sweep.subdir=${hydra.job.num}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    expected = {"seq_mnist": "val/acc", "adding": "val/mse", "copy": "val/acc", "char_text": "val/ppl"}
    for i, name in enumerate(datas):
        metrics = json.loads((tmp_path / str(i) / "metrics.json").read_text())
        assert expected[name] in metrics and "test/loss" in metrics, (name, metrics)
    assert "val/baseline_mse" in json.loads((tmp_path / "1" / "metrics.json").read_text())
    ppl = json.loads((tmp_path / "3" / "metrics.json").read_text())
    assert ppl["val/ppl"] == pytest.approx(math.exp(ppl["val/loss"]), rel=1e-4)

    ckpt = tmp_path / "3" / "checkpoints" / "best.ckpt"
    out = tmp_path / "eval"
    result = run_cli("eval.py", f"ckpt_path={ckpt}", "prompt=First Citizen:", "sample_length=40",
                     "temperature=0.5", f"hydra.run.dir={out}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    sample = (out / "sample.txt").read_text(encoding="utf-8")
    assert sample.startswith("First Citizen:") and len(sample) == len("First Citizen:") + 40 + 1  # + newline
    assert "test/ppl" in json.loads((out / "metrics.json").read_text())
