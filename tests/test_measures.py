"""What the README's measured answers rely on (issue 18 item 7): zero and N(0, 1) init, MSE on the softmax,
per-class recall and weight sparsity as test metrics, and the notes_* recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import zoo
from tests.conftest import ROOT
from zoo.init import init_weights
from zoo.registry import build_network
from zoo.training.callbacks.measures import PerClassRecall, WeightSparsity
from zoo.training.losses import SoftmaxMSELoss


def test_zero_init_keeps_every_unit_of_a_layer_equal() -> None:
    torch.manual_seed(0)
    net = init_weights(zoo.create_model("mlp", num_classes=10, in_channels=1, depth=2, width=16), "zeros")
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    for block in net.features:
        w = block[0].weight
        assert torch.equal(w, w[:1].expand_as(w))  # identical rows: the units never separate
    assert net.fc.bias.abs().sum() > 0  # only the output bias learnt something


def test_normal_init_has_the_asked_std_whatever_the_fans() -> None:
    torch.manual_seed(0)
    net = init_weights(nn.Sequential(nn.Linear(500, 400), nn.Linear(400, 3)), {"scheme": "normal", "std": 1.0})
    assert abs(net[0].weight.std().item() - 1.0) < 0.01 and net[0].bias.abs().sum() == 0
    net = init_weights(net, {"scheme": "normal", "std": 0.1})
    assert abs(net[0].weight.std().item() - 0.1) < 0.002


def test_softmax_mse_is_the_brier_score() -> None:
    z, y = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]]), torch.tensor([0, 2])
    p = torch.softmax(z, 1)
    by_hand = ((p[0] - torch.tensor([1.0, 0, 0])).pow(2).sum() + (p[1] - torch.tensor([0, 0, 1.0])).pow(2).sum()) / 2
    torch.testing.assert_close(SoftmaxMSELoss()(z, y), by_hand)
    torch.testing.assert_close(SoftmaxMSELoss()(z, F.one_hot(y, 3).float()), by_hand)


class _Fixed(pl.LightningModule):
    """A classifier whose test logits are given: test_step returns them, as ClassificationTask does."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(2, 3, bias=False)
        with torch.no_grad():
            self.net.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0005]]))

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.net(batch[0])


def test_per_class_recall_and_weight_sparsity_are_test_metrics() -> None:
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])  # logits ~ x: class 0, 0, 1, 1, 0
    y = torch.tensor([0, 1, 1, 1, 2])  # recall: class 0 1/1, class 1 2/3, class 2 0/1
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[PerClassRecall(), WeightSparsity(threshold=1e-3)])
    trainer.test(_Fixed(), DataLoader(TensorDataset(x, y), batch_size=2), verbose=False)
    m = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert m["test/recall_0"] == 1.0 and m["test/recall_1"] == pytest.approx(2 / 3) and m["test/recall_2"] == 0.0
    assert m["test/recall_mean"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert m["test/near_zero_weights"] == pytest.approx(4 / 6)  # 0, 0, 0 and 0.0005 of six weights



class _Logits(pl.LightningModule):
    """test_step returns the batch's inputs as its logits; its data facts name the classes, as a Task's do."""

    facts = {"class_names": ["ant", "bee", "cat", "dog", "eel"]}

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return batch[0]


def test_per_class_recall_and_the_tensorboard_per_class_figure_count_alike(tmp_path: Path) -> None:
    """PerClassRecall (metrics.json) and TensorBoardDiagnostics (TensorBoard) read one count: on the same test
    batches their per-class values are the same numbers, and both are the recall counted by hand."""
    from pytorch_lightning.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from zoo.training.callbacks.diagnostics import TensorBoardDiagnostics

    torch.manual_seed(0)
    logits, y = torch.randn(203, 5), torch.randint(0, 4, (203,))  # class 4 is never a label, only a prediction
    logits[y == 2, 2] += 3.0  # one class well recognised, so the recalls differ
    trainer = pl.Trainer(logger=TensorBoardLogger(tmp_path, name="tb"), enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu",
                         callbacks=[PerClassRecall(), TensorBoardDiagnostics(num_wrong=0, pr_curves_max_classes=0)])
    trainer.test(_Logits(), DataLoader(TensorDataset(logits, y), batch_size=16), verbose=False)
    recall = {k[len("test/recall_"):]: float(v) for k, v in trainer.callback_metrics.items()
              if k.startswith("test/recall_") and k != "test/recall_mean"}
    events = EventAccumulator(str(next(tmp_path.rglob("events.out.tfevents.*"))), size_guidance={"scalars": 0})
    events.Reload()
    shown = {t.rsplit("/", 1)[1]: events.Scalars(t)[-1].value for t in events.Tags()["scalars"]
              if t.startswith("test/acc_per_class/")}
    names = _Logits.facts["class_names"]
    by_hand = {names[c]: ((logits.argmax(1) == c) & (y == c)).sum().item() / (y == c).sum().item() for c in range(4)}
    assert recall == pytest.approx(by_hand) and len(set(by_hand.values())) > 1
    assert shown == {**recall, "eel": 0.0}  # the same float32 numbers; the figure also shows the unseen class
    assert "test/acc_per_class" in events.Tags()["images"]
    assert float(trainer.callback_metrics["test/recall_mean"]) == pytest.approx(sum(by_hand.values()) / 4)

NOTES = sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("notes_*.yaml"))
CASES = [(name, ()) for name in NOTES] + [("notes_maxout", ("model=lenet5",))]  # the README runs both nets


@pytest.mark.parametrize(("name", "overrides"), CASES)
def test_notes_recipes_show_their_command_and_build(name: str, overrides: tuple[str, ...]) -> None:
    text = (ROOT / "configs" / "experiment" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n") and f"experiment={name}" in text
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={name}", *overrides])
    assert cfg.task_name == name and cfg.trainer.max_epochs <= 10  # seconds to a minute on a CPU
    assert cfg.callbacks.per_class_recall._target_.endswith("PerClassRecall")
    net = build_network(OmegaConf.to_container(cfg.model, resolve=True), 10, 1, 28)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_variance_shift_compares_test_variance_with_the_running_one() -> None:
    from zoo.training.callbacks.measures import VarianceShift

    class Net(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm1d(2)
            self.bn.running_var.copy_(torch.tensor([4.0, 1.0]))

        def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            return self.bn(batch[0])

    x = torch.randn(400, 2, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 2.0])
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[VarianceShift()])
    trainer.test(Net(), DataLoader(TensorDataset(x, torch.zeros(400)), batch_size=100), verbose=False)
    expected = (x[:, 0].var() / 4 + x[:, 1].var() / 1) / 2
    assert float(trainer.callback_metrics["test/variance_shift"]) == pytest.approx(float(expected), rel=1e-4)
