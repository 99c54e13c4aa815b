"""A config that is a sweep itself (``hparams_search=optuna`` sets ``hydra.mode: MULTIRUN``) takes ``choice(...)``
without ``-m``; anywhere else a sweep without ``-m`` is still one line."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT
from zoo import cli
from zoo.errors import ZooError


def test_a_sweep_config_is_left_to_hydra_and_a_plain_run_is_told() -> None:
    configs = ROOT / "configs"
    assert cli.compose_check("train", ["hparams_search=optuna", "data.batch_size=choice(0,64)"], configs) is None
    with pytest.raises(ZooError, match=r"^Sweep parameters 'data.batch_size=choice\(0,64\)' requires --multirun"):
        cli.compose_check("train", ["data.batch_size=choice(0,64)"], ROOT / "configs")
    assert cli.compose_check("train", ["hparams_search=optuna"], ROOT / "configs").model.name == "lenet5"
