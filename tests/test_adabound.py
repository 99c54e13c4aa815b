"""AdaBound and AMSBound (Luo et al. 2019) against their update rule computed by hand in plain floats."""

from __future__ import annotations

import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from tests.conftest import ROOT
from zoo.errors import ZooError
from zoo.training.adabound import AdaBound
from zoo.training.optim import build_optimizer


def _by_hand(x0: list[float], scales: list[float], steps: int, lr: float, final_lr: float, gamma: float,
             amsbound: bool, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> tuple[list[float], int]:
    """The rule on f(x) = sum_i s_i x_i^4 / 4 (gradient s_i x_i^3, shrinking as x nears 0, so v_max > v);
    returns the final x and how many step sizes the bounds clipped."""
    x, m, v, vmax, clipped = list(x0), [0.0] * len(x0), [0.0] * len(x0), [0.0] * len(x0), 0
    for t in range(1, steps + 1):
        lower = final_lr * (1 - 1 / (gamma * t + 1))
        upper = final_lr * (1 + 1 / (gamma * t))
        for i, s in enumerate(scales):
            g = s * x[i] ** 3
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            vmax[i] = max(vmax[i], v[i])
            second = vmax[i] if amsbound else v[i]
            eta = lr * math.sqrt(1 - b2**t) / (1 - b1**t) / (math.sqrt(second) + eps)
            clipped += not lower <= eta <= upper
            x[i] -= min(max(eta, lower), upper) * m[i]
    return x, clipped


@pytest.mark.parametrize("amsbound", [False, True])
def test_steps_match_the_rule_computed_by_hand(amsbound: bool) -> None:
    x0, scales, kw = [1.5, -0.8, 0.3], [1.0, 10.0, 100.0], dict(lr=0.1, final_lr=0.05, gamma=0.05)
    p = nn.Parameter(torch.tensor(x0, dtype=torch.float64))
    opt = AdaBound([p], amsbound=amsbound, **kw)
    s = torch.tensor(scales, dtype=torch.float64)
    for _ in range(30):
        opt.zero_grad()
        (s * p**4 / 4).sum().backward()
        opt.step()
    expected, clipped = _by_hand(x0, scales, 30, amsbound=amsbound, **kw)
    assert clipped > 10  # the bounds did act: plain Adam would give other numbers
    torch.testing.assert_close(p.detach(), torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-12)
    adam_like, _ = _by_hand(x0, scales, 30, lr=0.1, final_lr=0.05, gamma=1e-12, amsbound=amsbound)
    assert max(abs(a - b) for a, b in zip(adam_like, expected)) > 1e-3


def test_amsbound_differs_from_adabound_when_gradients_shrink() -> None:
    a, _ = _by_hand([1.5, -0.8, 0.3], [1.0, 10.0, 100.0], 30, 0.1, 0.05, 0.05, amsbound=False)
    b, _ = _by_hand([1.5, -0.8, 0.3], [1.0, 10.0, 100.0], 30, 0.1, 0.05, 0.05, amsbound=True)
    p = nn.Parameter(torch.tensor([1.5, -0.8, 0.3], dtype=torch.float64))
    opt = AdaBound([p], lr=0.1, final_lr=0.05, gamma=0.05, amsbound=True)
    for _ in range(30):
        opt.zero_grad()
        (torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64) * p**4 / 4).sum().backward()
        opt.step()
    assert "max_exp_avg_sq" in opt.state[p] and max(abs(u - w) for u, w in zip(a, b)) > 1e-4


def test_closed_bounds_are_sgd_with_final_lr_and_follow_a_schedule() -> None:
    """With gamma huge the band is [final_lr, final_lr] from step 1: the step is final_lr * m, m = (1 - b1) g."""
    p = nn.Parameter(torch.tensor([2.0, -3.0]))
    opt = AdaBound([p], lr=1e-3, final_lr=0.2, gamma=1e9)
    (p**2 / 2).sum().backward()  # g = p
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([2.0, -3.0]) * (1 - 0.2 * 0.1))
    opt.param_groups[0]["lr"] = 0.5e-3  # a schedule halves lr: final_lr halves with it
    before = p.detach().clone()
    opt.zero_grad()
    (p**2 / 2).sum().backward()
    opt.step()
    m = 0.9 * 0.1 * torch.tensor([2.0, -3.0]) + 0.1 * before
    torch.testing.assert_close(p.detach(), before - 0.1 * m)
    assert opt.state_dict()["param_groups"][0]["base_lr"] == 1e-3  # kept for a resumed run


@pytest.mark.parametrize("name", ["adabound", "amsbound"])
def test_configs_build_through_the_optimizer_recipe(name: str) -> None:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = OmegaConf.to_container(compose(config_name="train", overrides=[f"optimizer={name}"]).optimizer)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    opt = build_optimizer({**cfg, "weight_decay": 0.01}, net)
    assert type(opt) is AdaBound and opt.defaults["amsbound"] is (name == "amsbound")
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]  # weights only, as for every optimizer
    before = net[0].weight.detach().clone()
    net(torch.randn(5, 3)).sum().backward()
    opt.step()
    assert not torch.equal(before, net[0].weight)
    with pytest.raises(ZooError, match="final_lr > 0"):
        AdaBound(net.parameters(), final_lr=0.0)
