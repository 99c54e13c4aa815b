"""Multi-label and binary classification (issue 18 item 4): data built from the embedded digits, BCE, metrics."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, f1_score

from zoo.datamodules.digit_tasks import BinaryDigits, ImbalancedDigits, MultiDigits
from zoo.datamodules.vision import MNISTTiny
from zoo.errors import ZooError
from zoo.training.multilabel import MultiLabelTask, multilabel_metrics
from zoo.training.tasks import task_class

ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 3e-3}
BCE = {"_target_": "zoo.training.multilabel.BCEWithLogitsLoss", "pos_weight": None, "threshold": 0.5}


def test_metrics_match_scikit_learn() -> None:
    g = torch.Generator().manual_seed(0)
    targets = (torch.rand(300, 6, generator=g) < 0.3).float()
    probs = (torch.rand(300, 6, generator=g) * 0.6 + targets * 0.3).round(decimals=2)  # informative, with ties
    targets[:, 5] = 0  # a label nobody has: F1 0, left out of mAP
    m = multilabel_metrics(probs, targets, threshold=0.5)
    pred = (probs > 0.5).numpy()
    y = targets.numpy()
    torch.testing.assert_close(m["f1"], torch.tensor(f1_score(y, pred, average=None, zero_division=0)))
    assert m["f1_macro"].item() == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    assert m["f1_micro"].item() == pytest.approx(f1_score(y, pred, average="micro", zero_division=0))
    assert m["map"].item() == pytest.approx(average_precision_score(y[:, :5], probs[:, :5].numpy(), average="macro"))
    assert m["acc"].item() == pytest.approx((pred == y.astype(bool)).all(1).mean())
    assert 0.3 < m["map"].item() < 1.0  # informative scores, not a constant


def _index(x: torch.Tensor, y: torch.Tensor, grid: int) -> dict[bytes, int]:
    """Downscaled digit image (as a canvas cell) -> its label."""
    cells = F.avg_pool2d(x.float(), grid).round().to(torch.uint8)
    return {c.numpy().tobytes(): int(label) for c, label in zip(cells, y)}


def test_multi_digits_labels_are_the_digits_on_the_canvas() -> None:
    dm = MultiDigits(grid=2, fill=0.5, train_size=200, val_size=60, test_size=60)
    dm.setup()
    tiny = MNISTTiny()
    tiny.setup()
    train_cells = _index(tiny.splits["train"].x, tiny.splits["train"].y, 2)
    test_cells = _index(tiny.splits["test"].x, tiny.splits["test"].y, 2)
    for name, index, other in (("train", train_cells, test_cells), ("test", test_cells, train_cells)):
        split = dm.splits[name]
        assert split.x.shape == (len(split), 1, 28, 28) and split.y.shape == (len(split), 10)
        for canvas, labels in zip(split.x, split.y):
            present = set()
            for r in range(2):
                for c in range(2):
                    cell = canvas[:, 14 * r : 14 * r + 14, 14 * c : 14 * c + 14]
                    if cell.any():
                        key = cell.numpy().tobytes()
                        assert key in index and key not in other  # each split's canvases use its own digits
                        present.add(index[key])
            assert present and labels.nonzero().flatten().tolist() == sorted(present)
    counts = dm.splits["train"].y.sum(1)
    assert counts.min() >= 1 and counts.max() <= 4 and 1.5 < counts.mean() < 3.0  # fill 0.5 of 4 cells, >= 1
    assert dm.facts()["task"] == "multilabel" and len(dm.facts()["label_frequency"]) == 10


def test_binary_and_imbalanced_digits_follow_the_embedded_split() -> None:
    tiny = MNISTTiny()
    tiny.setup()
    binary = BinaryDigits(positive=[1, 3, 5, 7, 9])
    binary.setup()
    assert binary.num_classes == 1 and binary.class_names == ["odd"]
    torch.testing.assert_close(binary.splits["test"].y.squeeze(1), (tiny.splits["test"].y % 2).float())
    assert torch.equal(binary.splits["test"].x, tiny.splits["test"].x)
    imb = ImbalancedDigits(minority=[0, 1, 2, 3, 4], keep=0.1)
    imb.setup()
    full, kept = torch.bincount(tiny.splits["train"].y, minlength=10), imb.class_counts()
    assert torch.equal(kept[5:], full[5:])
    assert ((kept[:5].float() / full[:5]) - 0.1).abs().max() < 0.05
    assert torch.equal(imb.splits["test"].y, tiny.splits["test"].y)  # evaluation stays balanced
    with pytest.raises(ZooError, match="data.positive"):
        BinaryDigits(positive=list(range(10)))


def _task(dm: MultiDigits | BinaryDigits, loss: dict | None = BCE) -> MultiLabelTask:
    dm.setup()
    cls = task_class(dm.task)
    return cls(model={"name": "lenet5"}, num_classes=dm.num_classes, in_channels=1, optimizer=ADAM, loss=loss,
               data={"config": {}, "facts": dm.facts()})


def test_loss_is_binary_cross_entropy_with_pos_weight() -> None:
    from omegaconf import OmegaConf

    from zoo.run import loss_config

    dm = MultiDigits(train_size=300, val_size=50, test_size=50)
    dm.setup()
    task = _task(dm, loss_config(OmegaConf.create({"loss": {**BCE, "pos_weight": "balanced"}}), dm))
    freq = torch.tensor(dm.facts()["label_frequency"])
    torch.testing.assert_close(task.criterion.pos_weight, (1 - freq) / freq)
    z, y = torch.randn(8, 10), (torch.rand(8, 10) < 0.3).float()
    w = task.criterion.pos_weight
    by_hand = -(w * y * torch.log(torch.sigmoid(z)) + (1 - y) * torch.log(1 - torch.sigmoid(z))).mean()
    torch.testing.assert_close(task.criterion(z, y), by_hand)
    assert isinstance(_task(dm, None).criterion, torch.nn.BCEWithLogitsLoss)  # no loss config: the task's own
    for other in ("zoo.training.losses.FocalLoss", "zoo.training.losses.CrossEntropyLoss"):  # refused, not swapped
        with pytest.raises(ZooError, match="take loss=bce"):
            _task(dm, {"_target_": other})


def test_multilabel_task_trains_and_logs_its_metrics(tmp_path) -> None:
    pl.seed_everything(0, verbose=False)
    dm = MultiDigits(train_size=2048, val_size=200, test_size=200, batch_size=64)
    task = _task(dm)
    trainer = pl.Trainer(max_epochs=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0)
    trainer.fit(task, datamodule=dm)
    fitted = dict(trainer.callback_metrics)
    trainer.test(task, datamodule=dm, verbose=False)
    m = {**fitted, **trainer.callback_metrics}
    for key in ("test/acc", "test/f1_micro", "test/f1_macro", "test/map", "test/f1_0", "test/f1_9", "train/acc",
                "val/map"):
        assert key in m and 0.0 <= float(m[key]) <= 1.0, key
    f = torch.tensor(dm.facts()["label_frequency"])
    constant = -(f * f.log() + (1 - f) * (1 - f).log()).mean()  # BCE of the best input-blind prediction
    assert float(m["test/loss"]) < 0.95 * constant
    assert float(m["test/map"]) > 2 * f.mean()  # chance mAP is the label frequency
