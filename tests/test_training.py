"""Regularisation and reproducibility: the MLP and activations, L1, EMA (exact, resumable), deterministic runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import zoo
from tests.conftest import run_cli, run_script
from zoo.errors import ZooError
from zoo.models.layers import ACTIVATIONS
from zoo.training.callbacks.ema import EMA
from zoo.weights import load_file

# -- models with a choice of activation ----------------------------------------------------------------------


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_layers_follow_the_config(activation: str) -> None:
    net = zoo.create_model("mlp", num_classes=10, in_channels=1, depth=3, width=32, activation=activation,
                           batch_norm=True, dropout=0.2)
    kinds = [type(m).__name__ for m in net.features[0]]
    assert kinds == ["Linear", "BatchNorm1d", type(nn.ModuleDict({"a": _act(activation)})["a"]).__name__, "Dropout"]
    assert net.features[0][0].bias is None  # BatchNorm's shift makes the bias redundant
    assert net(torch.randn(5, 1, 28, 28)).shape == (5, 10)
    # parameters: 784*32 + 2*(32*32) weights, 3 BN (2*32 each), classifier 32*10+10
    assert sum(p.numel() for p in net.parameters()) == 784 * 32 + 2 * 32 * 32 + 3 * 64 + 330


def _act(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "gelu": nn.GELU, "tanh": nn.Tanh,
            "sigmoid": nn.Sigmoid}[name]()


def test_mlp_depth_zero_is_the_perceptron_and_input_size_is_checked() -> None:
    net = zoo.create_model("mlp", num_classes=10, in_channels=1, depth=0)
    assert len(net.features) == 0 and net.fc.in_features == 784
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(net(x), x.flatten(1) @ net.fc.weight.T + net.fc.bias)
    with pytest.raises(ZooError, match="model.input_size=32"):
        net(torch.randn(2, 1, 32, 32))


def test_lenet_activation_changes_the_function_not_the_weights() -> None:
    torch.manual_seed(0)
    relu = zoo.create_model("lenet5", num_classes=10, in_channels=1)
    tanh = zoo.create_model("lenet5", num_classes=10, in_channels=1, activation="tanh")
    tanh.load_state_dict(relu.state_dict())  # same keys and shapes
    x = torch.randn(2, 1, 28, 28)
    h = torch.tanh(relu.conv1(nn.functional.pad(x, (2, 2, 2, 2))))
    torch.testing.assert_close(nn.functional.max_pool2d(h, 2), nn.functional.max_pool2d(tanh.act(tanh.conv1(
        nn.functional.pad(x, (2, 2, 2, 2)))), 2))
    assert not torch.allclose(relu(x), tanh(x))
    with pytest.raises(ZooError, match="unknown activation 'swish'"):
        zoo.create_model("lenet5", activation="swish")


# -- L1 penalty in the task ----------------------------------------------------------------------------------


def test_l1_adds_the_penalty_to_the_training_loss() -> None:
    from zoo.training.tasks import ClassificationTask

    kw = dict(model={"name": "mlp", "depth": 1, "width": 8}, num_classes=10, in_channels=1,
              optimizer={"_target_": "torch.optim.SGD", "lr": 0.1})
    torch.manual_seed(0)
    plain = ClassificationTask(**kw)
    torch.manual_seed(0)
    penalised = ClassificationTask(**kw, l1=1e-3)
    batch = (torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]))
    diff = penalised.training_step(batch, 0) - plain.training_step(batch, 0)  # no trainer: nothing is logged
    weights = penalised.net.features[0][0].weight.abs().sum() + penalised.net.fc.weight.abs().sum()
    torch.testing.assert_close(diff, 1e-3 * weights)


# -- EMA --------------------------------------------------------------------------------------------------------


class Tiny(pl.LightningModule):
    """A linear regression with SGD; records the weights it validates with."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(3, 1)
        self.validated: list[torch.Tensor] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if batch_idx == 0 and self.trainer.state.fn == "fit":
            self.validated.append(self.net.weight.detach().clone())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Recorder(pl.Callback):
    def __init__(self) -> None:
        self.weights: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        self.weights.append(pl_module.net.weight.detach().clone())


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, generator=g)
    return DataLoader(TensorDataset(x, x @ torch.tensor([[1.0], [-2.0], [0.5]])), batch_size=8)


def _trainer(tmp: Path, epochs: int, *callbacks: pl.Callback) -> pl.Trainer:
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp, filename="last", save_top_k=1, monitor=None)
    return pl.Trainer(max_epochs=epochs, callbacks=[*callbacks, ckpt], logger=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0)


def test_ema_follows_the_formula_validates_with_the_average_and_saves_it(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, rec, ema = Tiny(), Recorder(), EMA(decay=0.9, warmup=True)
    avg = model.net.weight.detach().clone()
    _trainer(tmp_path, 2, rec, ema).fit(model, _loader(), _loader())
    expected_at_val = []
    for n, w in enumerate(rec.weights):  # 4 steps an epoch
        d = min(0.9, (1 + n) / (10 + n))
        avg = d * avg + (1 - d) * w
        if n % 4 == 3:
            expected_at_val.append(avg.clone())
    for got, want in zip(model.validated, expected_at_val, strict=True):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(model.net.weight.detach(), avg)  # after fit the module holds the average
    ckpt = load_file(tmp_path / "last.ckpt")
    torch.testing.assert_close(ckpt["state_dict"]["net.weight"], avg)
    torch.testing.assert_close(ckpt["callbacks"]["EMA"]["raw"]["net.weight"], rec.weights[-1])


def test_ema_resumes_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    straight = Tiny()
    init = {k: v.clone() for k, v in straight.state_dict().items()}
    _trainer(tmp_path / "a", 3, EMA(decay=0.8)).fit(straight, _loader(), _loader())

    first = Tiny()
    first.load_state_dict(init)
    _trainer(tmp_path / "b", 1, EMA(decay=0.8)).fit(first, _loader(), _loader())
    resumed, rec = Tiny(), Recorder()
    _trainer(tmp_path / "b", 3, EMA(decay=0.8), rec).fit(resumed, _loader(), _loader(),
                                                           ckpt_path=tmp_path / "b" / "last.ckpt")
    torch.testing.assert_close(resumed.net.weight, straight.net.weight, rtol=0, atol=0)
    a, b = load_file(tmp_path / "a" / "last.ckpt"), load_file(tmp_path / "b" / "last.ckpt")
    torch.testing.assert_close(a["callbacks"]["EMA"]["raw"], b["callbacks"]["EMA"]["raw"], rtol=0, atol=0)


# -- the whole loop through train.py ------------------------------------------------------------------------------

COMBINED = ["model=lenet5", "model.activation=tanh", "trainer.max_epochs=2", "+trainer.limit_train_batches=8",
            "trainer.deterministic=true", "trainer.accelerator=cpu", "trainer.gradient_clip_val=0.5",
            "trainer.accumulate_grad_batches=2", "l1=1e-5", "init=kaiming_normal", "scheduler.warmup_steps=3",
            "callbacks=[default,ema,early_stopping]", "callbacks.diagnostics=null",
            "callbacks.progress_bar.refresh_rate=0", "logger=csv", "seed=7"]


@pytest.mark.slow
def test_deterministic_runs_are_bit_identical(tmp_path: Path) -> None:
    """One run in a process of its own, the other in the test process (after whatever ran there before)."""
    metrics = []
    for i, run in enumerate((run_script, run_cli)):
        proc = run("train.py", *COMBINED, f"hydra.run.dir={tmp_path / str(i)}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        metrics.append(json.loads((tmp_path / str(i) / "metrics.json").read_text()))
    numbers = [{k: v for k, v in m.items() if k != "checkpoint"} for m in metrics]
    assert numbers[0] == numbers[1]  # exact float equality, not approx
    assert numbers[0]["val/acc"] > 0.2  # and it learned something with every option switched on
    csv = (tmp_path / "0" / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "train/lr" in csv and "val/acc" in csv


@pytest.mark.parametrize("name", ["mlp_sigmoid_vs_relu", "mlp_batch_norm", "mlp_dropout", "sgd_vs_adam"])
def test_demo_recipes_compose(name: str) -> None:
    from hydra import compose, initialize_config_dir

    from tests.conftest import ROOT

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={name}"])
    assert cfg.data._target_.endswith("MNISTTiny") and cfg.task_name == name
    if name.startswith("mlp_"):
        assert cfg.model.name == "mlp"
    if name in ("mlp_sigmoid_vs_relu", "mlp_batch_norm"):  # one variable changes between the two runs
        assert (cfg.model.depth, cfg.model.activation, cfg.init.scheme) == (10, "sigmoid", "kaiming_normal")
        assert cfg.model.batch_norm == (name == "mlp_batch_norm")


# -- what the task logs per epoch, and the progress bar's cadence ---------------------------------------------


def test_train_epoch_loss_and_accuracy_equal_a_hand_computation(tmp_path: Path) -> None:
    """train/loss_epoch is the sample-weighted mean loss of the epoch's batches and train/acc their accuracy
    (lr 0, so the network is the same for every batch and the hand computation can rerun it)."""
    from zoo.training.tasks import ClassificationTask

    torch.manual_seed(0)
    task = ClassificationTask(model={"name": "mlp", "depth": 1, "width": 8, "input_size": 4}, num_classes=3,
                              in_channels=1, optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.0})
    x, y = torch.randn(20, 1, 4, 4), torch.randint(0, 3, (20,))
    loader = DataLoader(TensorDataset(x, y), batch_size=8)  # batches of 8, 8 and 4: the weighting matters
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, accelerator="cpu", log_every_n_steps=1)
    trainer.fit(task, train_dataloaders=loader)
    with torch.no_grad():
        logits = task.net(x)
    losses = [nn.functional.cross_entropy(logits[i : i + 8], y[i : i + 8]) for i in range(0, 20, 8)]
    expected_loss = sum(loss * len(y[i : i + 8]) for loss, i in zip(losses, range(0, 20, 8))) / 20
    torch.testing.assert_close(trainer.callback_metrics["train/loss_epoch"], expected_loss)
    torch.testing.assert_close(trainer.callback_metrics["train/acc"], (logits.argmax(1) == y).float().mean())
    assert not task.train_stats.update_called  # reset for the next epoch


def _bar_fit(monkeypatch: pytest.MonkeyPatch, refresh_rate: int, batches: int = 30) -> tuple[list, list]:
    """A real fit of ``batches`` batches with zoo's bar; the clock moves 1/32 s a batch. Returns, for every
    update the bar passed on to Lightning, (batch number, the metrics it showed), and each batch's loss."""
    from pytorch_lightning.callbacks import RichProgressBar as LightningBar

    from zoo.training.callbacks import progress
    from zoo.training.tasks import ClassificationTask

    clock = [100.0]
    shown: list[tuple[int, dict]] = []
    losses: list[float] = []

    class Clock(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # noqa: ANN001
            losses.append(float(outputs["loss"]))
            clock[0] += 1 / 32

    def lightning_update(self, trainer, pl_module, outputs, batch, batch_idx):  # noqa: ANN001
        shown.append((batch_idx + 1, self.get_metrics(trainer, pl_module)))

    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(LightningBar, "on_train_batch_end", lightning_update)
    torch.manual_seed(0)
    task = ClassificationTask(model={"name": "mlp", "depth": 1, "width": 8, "input_size": 4}, num_classes=3,
                              in_channels=1, optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1})
    loader = DataLoader(TensorDataset(torch.randn(batches * 4, 1, 4, 4), torch.randint(0, 3, (batches * 4,))),
                        batch_size=4)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_model_summary=False, enable_checkpointing=False,
                         accelerator="cpu", log_every_n_steps=50,
                         callbacks=[Clock(), progress.RichProgressBar(refresh_rate=refresh_rate)])
    trainer.fit(task, train_dataloaders=loader)
    return shown, losses


def test_rich_progress_bar_updates_at_most_refresh_rate_times_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    shown, _ = _bar_fit(monkeypatch, refresh_rate=8)
    # the first batch, then one every 1/8 s (every 4th batch of 1/32 s), and the last so the bar ends full
    assert [b for b, _ in shown] == [1, 5, 9, 13, 17, 21, 25, 29, 30]


def test_rich_progress_bar_shows_the_running_epoch_loss_never_a_stale_one(monkeypatch: pytest.MonkeyPatch) -> None:
    shown, losses = _bar_fit(monkeypatch, refresh_rate=8)
    for batch, metrics in shown:  # train/loss_step (logged every 50 steps) would show batch 1's loss throughout
        assert "train/loss_step" not in metrics and "train/loss_epoch" not in metrics
        assert metrics["train/loss"] == pytest.approx(sum(losses[:batch]) / batch, rel=1e-5)
