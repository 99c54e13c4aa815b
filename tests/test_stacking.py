"""ensemble=stacking (issue 18 item 5): a logistic-regression meta-classifier on the members' validation-split
probabilities, tested where the answer is known, and reported beside mean, vote and weighted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT
from tests.test_checkpoints import write_checkpoint
from zoo.evaluate import Stacking, combine

CLASSES = 5


def _members(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three members on ``n`` samples: 0 always right, 1 noise, 2 always sure of the wrong class (y + 1)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    right = torch.nn.functional.one_hot(y, CLASSES).double() * 0.6 + 0.4 / CLASSES
    noise = torch.rand(n, CLASSES, generator=g, dtype=torch.float64).softmax(1)
    shifted = torch.nn.functional.one_hot((y + 1) % CLASSES, CLASSES).double() * 0.9 + 0.1 / CLASSES
    return torch.stack([right, noise, shifted]).float(), y


def test_stacking_weights_the_member_that_is_right_over_noise() -> None:
    probs, y = _members(400, seed=0)
    stacker = Stacking().fit(probs[:2], y)  # the right member and the noisy one
    w = stacker.member_weights()
    assert w[0] > 5 * w[1], w.tolist()
    test_probs, test_y = _members(300, seed=1)
    assert (stacker.predict(test_probs[:2]) == test_y).all()


def test_stacking_learns_what_averaging_cannot() -> None:
    """A member that is always sure of the next class is perfectly informative to a meta-classifier, while
    averaging or voting it with noise gets most samples wrong."""
    probs, y = _members(400, seed=0)
    stacker = Stacking().fit(probs[1:], y)  # noise and the shifted member
    test_probs, test_y = _members(300, seed=1)
    assert (combine(test_probs[1:], "stacking", stacker=stacker) == test_y).float().mean() == 1.0
    for rule in ("mean", "vote"):
        assert (combine(test_probs[1:], rule) == test_y).float().mean() < 0.3
    w = stacker.member_weights()
    assert w[1] > 5 * w[0], w.tolist()


def test_the_fit_is_deterministic_and_the_l2_keeps_it_finite() -> None:
    probs, y = _members(200, seed=2)  # member 0 separates the classes perfectly: without L2 the weights diverge
    a, b = Stacking().fit(probs, y), Stacking().fit(probs, y)
    assert torch.equal(a.weight, b.weight) and torch.isfinite(a.weight).all()
    assert a.weight.abs().max() < 1e3
    assert Stacking(l2=1.0).fit(probs, y).weight.norm() < a.weight.norm()  # more L2, smaller weights


def test_eval_py_stacking_reports_it_beside_mean_vote_and_weighted(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from zoo.evaluate import evaluate

    a = write_checkpoint(tmp_path / "a.ckpt", seed=0)
    b = write_checkpoint(tmp_path / "b.ckpt", seed=1)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("eval", overrides=[f"ckpt_path=[{a},{b}]", "ensemble=stacking",
                                         f"paths.output_dir={tmp_path / 'out'}"])
        stacked = evaluate(cfg)
        mean = evaluate(compose("eval", overrides=[f"ckpt_path=[{a},{b}]", "ensemble=mean",
                                                   f"paths.output_dir={tmp_path / 'mean'}"]))
    assert stacked["ensemble"] == "stacking" and len(stacked["members"]) == 2
    assert set(stacked["compare"]) == {"mean/test/acc", "vote/test/acc", "weighted/test/acc"}
    assert stacked["compare"]["mean/test/acc"] == pytest.approx(mean["test/acc"])  # the same test split
    assert stacked["val_samples"] == 500 and len(stacked["weights"]) == 2
    assert 0.0 <= stacked["test/acc"] <= 1.0
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["test/acc"] == stacked["test/acc"]
