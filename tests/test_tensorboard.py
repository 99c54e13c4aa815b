"""What TensorBoard shows: a few training steps through train.py, read back with EventAccumulator."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from tests.conftest import run_cli
from zoo.training.callbacks.diagnostics import TensorBoardDiagnostics


def _read(tb_dir: Path) -> dict:
    """Tags of every kind, scalar values and the HParams session record of all event files of a run."""
    out: dict = {"scalars": {}, "histograms": {}, "images": set(), "graph": False, "hparams": b"", "pr": set()}
    for f in sorted(tb_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0, "histograms": 0, "images": 1})
        acc.Reload()
        tags = acc.Tags()
        for t in tags["scalars"]:
            out["scalars"].setdefault(t, []).extend((e.step, e.value) for e in acc.Scalars(t))
        for t in tags["histograms"]:
            out["histograms"].setdefault(t, []).extend(e.step for e in acc.Histograms(t))
        out["images"] |= set(tags["images"])
        out["graph"] |= bool(tags["graph"])
        try:
            out["pr"] |= set(acc.PluginTagToContent("pr_curves"))
        except KeyError:
            pass
        try:
            out["hparams"] += acc.PluginTagToContent("hparams").get("_hparams_/session_start_info", b"")
        except KeyError:
            pass
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    run_dir = tmp_path_factory.mktemp("tb_run")
    proc = run_cli(
        "train.py", "model=mlp", "model.depth=2", "model.width=32", "trainer.max_epochs=2",
        "+trainer.limit_train_batches=6", "trainer.log_every_n_steps=1", "callbacks.diagnostics.every_n_steps=4",
        "callbacks.diagnostics.num_wrong=8", "scheduler.warmup_steps=4", "trainer.precision=bf16-mixed",
        "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {**_read(run_dir / "tensorboard"), "dir": run_dir, "output": proc.stdout + proc.stderr}


@pytest.mark.slow
def test_curves_learning_rate_and_hparams(run: dict) -> None:
    scalars = run["scalars"]
    for tag in ("train/loss_step", "train/loss_epoch", "train/acc", "val/loss", "val/acc", "val/acc_top5",
                "test/acc", "train/lr", "hp/val_acc", "hp/test_acc"):
        assert tag in scalars, (tag, sorted(scalars))
    # the warmup ramp: lr = 1e-3 * (0.01 + 0.99 * step / 4) for the first 4 steps (cosine has not moved yet)
    lr = dict(scalars["train/lr"])
    for step in range(4):
        assert lr[step] == pytest.approx(1e-3 * (0.01 + 0.99 * step / 4), rel=1e-5)
    assert lr[4] == pytest.approx(1e-3, rel=1e-5)
    # one val/acc point per epoch: re-validating the best checkpoint after fitting adds none
    assert [s for s, _ in scalars["val/acc"]] == [s for s, _ in scalars["train/loss_epoch"]] == [5, 11]
    assert b"model.name" in run["hparams"] and b"mlp" in run["hparams"] and b"optimizer.lr" in run["hparams"]


@pytest.mark.slow
def test_diagnostics_histograms_gradient_norms_graph_and_test_figures(run: dict) -> None:
    layers = ["features.0.0.weight", "features.0.0.bias", "features.1.0.weight", "fc.weight", "fc.bias"]
    for name in layers:
        # histograms at the first optimizer step of each of the 2 epochs of 6 steps
        assert run["histograms"][f"weights/{name}"] == run["histograms"][f"grads/{name}"] == [0, 6], name
        steps = [s for s, _ in run["scalars"][f"grad_norm/{name}"]]
        assert steps == [0, 4, 8], steps  # every 4 optimizer steps of 12, nothing in between
    total = dict(run["scalars"]["grad_norm/total"])
    per_layer = sum(dict(run["scalars"][f"grad_norm/{n}"])[0] ** 2 for n in layers + ["features.1.0.bias"])
    assert total[0] == pytest.approx(per_layer**0.5, rel=1e-4)
    assert run["graph"]
    dead = {t: v for t, v in run["scalars"].items() if t.startswith("dead_relu/")}
    assert sorted(dead) == ["dead_relu/features.0.1", "dead_relu/features.1.1"], sorted(dead)
    assert all([s for s, _ in v] == [0, 4, 8] and all(0 <= x <= 1 for _, x in v) for v in dead.values())
    assert {"test/confusion_matrix", "test/most_confident_wrong", "test/acc_per_class"} <= run["images"]
    # one precision-recall curve per digit, and per-class accuracies whose sample-weighted mean is test/acc
    assert run["pr"] == {f"test/pr_curve/{d}" for d in range(10)}, run["pr"]
    per_class = {t: v[-1][1] for t, v in run["scalars"].items() if t.startswith("test/acc_per_class/")}
    assert len(per_class) == 10 and all(0 <= a <= 1 for a in per_class.values())
    assert (run["dir"] / "curves.png").stat().st_size > 5000  # the per-epoch picture of the run


def test_confusion_matrix_and_most_confident_wrong_by_hand() -> None:
    cb = TensorBoardDiagnostics(num_wrong=2)
    cb.on_test_start(None, None)  # type: ignore[arg-type]
    logits = torch.tensor([[3.0, 0, 0], [0, 2.0, 0], [5.0, 0, 0], [0, 0, 1.0], [0, 4.0, 0]])
    y = torch.tensor([0, 1, 1, 2, 2])
    x = torch.arange(5.0).view(5, 1, 1, 1).expand(5, 1, 2, 2)
    for sl in (slice(0, 3), slice(3, 5)):  # two batches
        cb.on_test_batch_end(SimpleNamespace(), None, logits[sl], (x[sl], y[sl]), 0)  # type: ignore[arg-type]
    # rows true class, columns prediction (sklearn's convention): predictions are 0, 1, 0, 2, 1
    assert cb._cm.tolist() == [[1, 0, 0], [1, 1, 0], [0, 1, 1]]
    # wrong: sample 2 (true 1, predicted 0, p=0.98) and sample 4 (true 2, predicted 1, p=0.96), most confident first
    assert [(p, t, int(img[0, 0, 0])) for _, p, t, img in cb._wrong] == [(0, 1, 2), (1, 2, 4)]
    assert cb._wrong[0][0] == pytest.approx(torch.softmax(logits[2], 0).max().item())


def test_dead_relu_fraction_by_hand() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.copy_(torch.tensor([-1.0, 1.0, -1.0, -1.0]))  # three of four units never fire
    logged: dict = {}
    logger = SimpleNamespace(log_metrics=lambda m, step: logged.update(m))
    cb = TensorBoardDiagnostics()
    cb._watch_relus(SimpleNamespace(net=net))  # type: ignore[arg-type]
    net(torch.randn(8, 3))
    cb._log_dead_units(SimpleNamespace(loggers=[logger], global_step=0))  # type: ignore[arg-type]
    assert logged == {"dead_relu/1": pytest.approx(0.75)}
    assert not net[1]._forward_hooks  # the hooks are gone after the logged step


def test_epoch_curves_record_each_epochs_numbers_and_resume(tmp_path: Path) -> None:
    """EpochCurves' history holds, for every epoch, what Lightning logged for that epoch (read back from CSV)."""
    import csv

    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    from zoo.training.callbacks.diagnostics import EpochCurves
    from zoo.training.tasks import ClassificationTask

    torch.manual_seed(0)
    task = ClassificationTask(model={"name": "mlp", "depth": 1, "width": 8, "input_size": 4}, num_classes=3,
                              in_channels=1, optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.5})
    data = TensorDataset(torch.randn(24, 1, 4, 4), torch.randint(0, 3, (24,)))
    curves = EpochCurves()
    trainer = pl.Trainer(max_epochs=3, logger=CSVLogger(tmp_path), enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, accelerator="cpu",
                         default_root_dir=tmp_path, callbacks=[curves])
    trainer.fit(task, DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))
    logged: dict[str, dict[int, float]] = {}
    for row in csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))):
        for tag in ("train/loss_epoch", "val/loss", "val/acc"):
            if row.get(tag):
                logged.setdefault(tag, {})[int(row["epoch"])] = float(row[tag])
    assert set(logged["val/loss"]) == {0, 1, 2}
    for tag, points in logged.items():
        assert curves.history[tag] == pytest.approx(points), tag
    assert (tmp_path / "curves.png").stat().st_size > 5000
    again = EpochCurves()
    again.load_state_dict(curves.state_dict())  # what a checkpoint keeps
    assert again.history == curves.history


@pytest.mark.slow
def test_terminal_shows_macs_and_no_lightning_tips(run: dict) -> None:
    out = run["output"]
    assert "Total MACs" in out and "Total FLOPs: 0 " not in out
    assert "Tip:" not in out and "LeafSpec" not in out
