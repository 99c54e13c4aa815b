"""Optimizers and schedules built from their Hydra configs: parameter groups and learning rates by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from tests.conftest import ROOT
from zoo.errors import ZooError
from zoo.training.optim import build_optimizer, build_scheduler, classifier_parameter_names, l1_penalty

CONFIGS = str(ROOT / "configs")
OPTIMIZERS = {
    "sgd": torch.optim.SGD, "nesterov": torch.optim.SGD, "adagrad": torch.optim.Adagrad,
    "adadelta": torch.optim.Adadelta, "rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW, "adamax": torch.optim.Adamax, "nadam": torch.optim.NAdam,
    "amsgrad": torch.optim.Adam,
}


def _cfg(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides))
    return {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("optimizer", "scheduler")}


class Net(nn.Module):
    """Conv, BatchNorm, LayerNorm and Linear: weights, biases and norm parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.ln = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.ln(self.bn(self.conv(x)).mean((2, 3))))

    def reset_classifier(self, n: int) -> None:
        self.fc = nn.Linear(4, n)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_config_builds_and_takes_a_step(name: str) -> None:
    cfg = _cfg(f"optimizer={name}")["optimizer"]
    net = Net()
    opt = build_optimizer(cfg, net)
    assert type(opt) is OPTIMIZERS[name]
    assert opt.param_groups[0]["lr"] == cfg["lr"]
    before = net.conv.weight.detach().clone()
    net(torch.randn(2, 1, 5, 5)).sum().backward()
    opt.step()
    assert not torch.equal(before, net.conv.weight)
    if name == "nesterov":
        assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9
    if name == "amsgrad":
        assert opt.param_groups[0]["amsgrad"]


def test_weight_decay_applies_to_weights_only() -> None:
    net = Net()
    opt = build_optimizer(_cfg("optimizer=sgd", "optimizer.weight_decay=0.01")["optimizer"], net)
    by_decay = {g["weight_decay"]: {id(p) for p in g["params"]} for g in opt.param_groups}
    assert by_decay[0.01] == {id(net.conv.weight), id(net.fc.weight)}
    assert by_decay[0.0] == {id(p) for p in (net.conv.bias, net.bn.weight, net.bn.bias, net.ln.weight, net.ln.bias,
                                              net.fc.bias)}
    # the decay really reaches the weights only: with zero gradients, one SGD step shrinks them by lr * wd
    opt = build_optimizer({"_target_": "torch.optim.SGD", "lr": 0.5, "weight_decay": 0.1}, net)
    w, b = net.fc.weight.detach().clone(), net.bn.weight.detach().clone()
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    torch.testing.assert_close(net.fc.weight.detach(), w * (1 - 0.5 * 0.1))
    torch.testing.assert_close(net.bn.weight.detach(), b)


def test_frozen_parameters_are_left_out() -> None:
    net = Net()
    net.conv.requires_grad_(False)
    opt = build_optimizer({"_target_": "torch.optim.Adam", "lr": 1e-3}, net)
    ids = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(net.conv.weight) not in ids and id(net.fc.weight) in ids


def test_backbone_lr_scale_slows_everything_but_the_classifier() -> None:
    import zoo

    net = zoo.create_model("lenet5", num_classes=10, in_channels=1)
    assert classifier_parameter_names(net) == {"fc3.weight", "fc3.bias"}
    cfg = _cfg("optimizer=sgd", "optimizer.lr=0.1", "optimizer.backbone_lr_scale=0.1")["optimizer"]
    opt = build_optimizer(cfg, net)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr_of[id(net.fc3.weight)] == lr_of[id(net.fc3.bias)] == pytest.approx(0.1)
    assert lr_of[id(net.conv1.weight)] == lr_of[id(net.fc2.bias)] == pytest.approx(0.01)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(net.parameters()))


def test_a_bad_optimizer_argument_is_one_line() -> None:
    with pytest.raises(ZooError, match="optimizer torch.optim.SGD"):
        build_optimizer({"_target_": "torch.optim.SGD", "lr": 0.1, "betas": [0.9, 0.99]}, Net())


def test_l1_penalty_sums_absolute_weights_only() -> None:
    net = Net()
    expected = net.conv.weight.abs().sum() + net.fc.weight.abs().sum()
    torch.testing.assert_close(l1_penalty(net), expected)


# -- schedules ---------------------------------------------------------------------------------------------------

LR = 0.1
TRAINER = SimpleNamespace(max_epochs=10, estimated_stepping_batches=100)  # 10 optimizer steps per epoch


def _run(sched_name: str, *overrides: str, epochs: int = 10, metric: float | None = None) -> list[float]:
    """The learning rate at the start of each optimizer step of ``epochs`` epochs, stepping like Lightning."""
    cfg = _cfg(f"scheduler={sched_name}", "optimizer=sgd", f"optimizer.lr={LR}", *overrides)
    opt = build_optimizer(cfg["optimizer"], Net())
    configs = build_scheduler(cfg["scheduler"], opt, TRAINER)
    lrs = []
    for _ in range(epochs):
        for _ in range(10):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            for c in configs:
                if c["interval"] == "step":
                    c["scheduler"].step()
        for c in configs:
            if c["interval"] == "epoch":
                sch = c["scheduler"]
                sch.step(metric) if isinstance(sch, torch.optim.lr_scheduler.ReduceLROnPlateau) else sch.step()
    return lrs


def _per_epoch(lrs: list[float]) -> list[float]:
    return lrs[::10]


@pytest.mark.parametrize(
    ("name", "overrides", "expected"),
    [
        ("step", ["scheduler.step_size=3", "scheduler.gamma=0.5"], [LR * 0.5 ** (e // 3) for e in range(10)]),
        ("multistep", ["scheduler.milestones=[2,5]"], [LR * 0.1 ** ((e >= 2) + (e >= 5)) for e in range(10)]),
        ("exponential", ["scheduler.gamma=0.8"], [LR * 0.8**e for e in range(10)]),
        ("cosine", [], [LR * (1 + math.cos(math.pi * e / 10)) / 2 for e in range(10)]),
        ("polynomial", ["scheduler.power=2"], [LR * (1 - e / 10) ** 2 for e in range(10)]),
        ("none", [], [LR] * 10),
    ],
)
def test_epoch_schedules_match_their_formulas(name: str, overrides: list[str], expected: list[float]) -> None:
    assert _per_epoch(_run(name, *overrides)) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_cosine_per_step_fills_t_max_with_the_run_length() -> None:
    lrs = _run("cosine", "scheduler.interval=step")
    assert lrs == pytest.approx([LR * (1 + math.cos(math.pi * s / 100)) / 2 for s in range(100)], rel=1e-9, abs=1e-12)


def test_one_cycle_spans_the_estimated_stepping_batches() -> None:
    lrs = _run("one_cycle")
    assert len(lrs) == 100
    assert lrs[0] == pytest.approx(LR / 25)  # max_lr / div_factor
    assert max(lrs) == pytest.approx(LR) and lrs.index(max(lrs)) == 29  # the peak at pct_start of the run
    assert lrs[-1] == pytest.approx(LR / 25 / 1e4, rel=1e-6)  # initial / final_div_factor at the last step
    # cosine ramp up: halfway to the peak at step 14.5 of 29
    assert lrs[10] == pytest.approx(LR / 25 + (LR - LR / 25) * (1 - math.cos(math.pi * 10 / 29)) / 2)


def test_reduce_on_plateau_cuts_after_patience_epochs_without_improvement() -> None:
    lrs = _per_epoch(_run("reduce_on_plateau", "scheduler.patience=2", "scheduler.factor=0.5", metric=1.0))
    # epoch 0 sets the best; epochs 1, 2 do not improve -> 3rd bad epoch (3 > patience 2) cuts after epoch 3
    assert lrs == pytest.approx([LR] * 4 + [LR / 2] * 3 + [LR / 4] * 3)


@pytest.mark.parametrize("warmup", ["scheduler.warmup_steps=15", "scheduler.warmup_epochs=1.5"])
def test_linear_warmup_multiplies_any_schedule(warmup: str) -> None:
    lrs = _run("cosine", warmup, "scheduler.warmup_start_factor=0.1", epochs=4)

    def expected(s: int) -> float:
        ramp = 0.1 + 0.9 * min(s, 15) / 15
        return LR * ramp * (1 + math.cos(math.pi * (s // 10) / 10)) / 2

    assert lrs == pytest.approx([expected(s) for s in range(40)], rel=1e-9)


def test_warmup_alone_on_a_constant_rate() -> None:
    lrs = _run("none", "scheduler.warmup_steps=4", epochs=1)
    assert lrs == pytest.approx([LR * (0.01 + 0.99 * min(s, 4) / 4) for s in range(10)])


def test_one_cycle_refuses_a_second_warmup() -> None:
    cfg = _cfg("scheduler=one_cycle", "+scheduler.warmup_steps=5")
    with pytest.raises(ZooError, match="pct_start"):
        build_scheduler(cfg["scheduler"], build_optimizer(cfg["optimizer"], Net()), TRAINER)


def test_every_schedule_is_one_yaml_file_named_train_lr() -> None:
    for path in sorted((ROOT / "configs" / "scheduler").glob("*.yaml")):
        cfg = _cfg(f"scheduler={path.stem}", "optimizer=sgd")
        configs = build_scheduler(cfg["scheduler"], build_optimizer(cfg["optimizer"], Net()), TRAINER)
        assert configs and configs[0]["name"] == "train/lr", path.stem
