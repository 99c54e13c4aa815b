"""The papers' CIFAR recipes (configs/experiment/<model>_cifar10|100.yaml) say what each paper says.

Each composes to its network and the paper's optimizer, schedule, batch and length, and its comment cites the
table and error rate it should reach. One small recipe trains a step on CIFAR-10 files in the real format.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import ROOT
from fake_data import write_cifar10
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

EXPERIMENTS = ROOT / "configs" / "experiment"

# recipe -> (model, paper's test error %, table); the training settings per family are in FAMILY below.
HE_2015 = {f"resnet{d}_cifar10": (f"resnet{d}", e) for d, e in
           ((20, 8.75), (32, 7.51), (44, 7.17), (56, 6.97), (110, 6.43), (1202, 7.93))}
HE_2016 = {"preact_resnet164_cifar10": 5.46, "preact_resnet164_cifar100": 24.33, "preact_resnet1001_cifar10": 4.92,
           "preact_resnet1001_cifar100": 22.71}
WRN = {"wide_resnet16_8_cifar10": 4.81, "wide_resnet16_8_cifar100": 22.07, "wide_resnet28_10_cifar10": 4.17,
       "wide_resnet28_10_cifar100": 20.50, "wide_resnet40_4_cifar10": 4.97, "wide_resnet40_4_cifar100": 22.89}
DENSENET = {"densenet_bc_100_12_cifar10": 4.51, "densenet_bc_100_12_cifar100": 22.27,
            "densenet_bc_250_24_cifar10": 3.62, "densenet_bc_250_24_cifar100": 17.60,
            "densenet_bc_190_40_cifar10": 3.46, "densenet_bc_190_40_cifar100": 17.18}
RESNEXT = {"resnext29_8x64d_cifar10": 3.65, "resnext29_8x64d_cifar100": 17.77, "resnext29_16x64d_cifar10": 3.58,
           "resnext29_16x64d_cifar100": 17.31}
ERRORS = {**{k: v[1] for k, v in HE_2015.items()}, **HE_2016, **WRN, **DENSENET, **RESNEXT}
TABLES = {**dict.fromkeys(HE_2015, "Table 6"), **dict.fromkeys(HE_2016, "Table 3"), **dict.fromkeys(WRN, "Table 4"),
          **dict.fromkeys(DENSENET, "Table 2"), **dict.fromkeys(RESNEXT, "Table 7")}


def _compose(name: str, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=[f"experiment={name}", *overrides])


def _model_of(name: str) -> str:
    return re.sub(r"_cifar10+$", "", name)


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_recipe_cites_its_table_and_error_and_builds_its_network(name: str) -> None:
    text = (EXPERIMENTS / f"{name}.yaml").read_text()
    comment = " ".join(line[1:].strip() for line in text.splitlines() if line.startswith("#"))
    assert f"{ERRORS[name]:.2f}% test error" in comment and TABLES[name] in comment
    assert f"as zoo's {_model_of(name)}" in comment and f"experiment={name}" in comment
    cfg = _compose(name)
    assert cfg.model.name == _model_of(name)
    assert cfg.data._target_.endswith("CIFAR100" if name.endswith("100") else "CIFAR10")
    assert cfg.data.augment == "standard" and cfg.optimizer._target_ == "torch.optim.SGD"
    assert (cfg.optimizer.lr, cfg.optimizer.momentum) == (0.1, 0.9)


def _schedule(cfg: DictConfig) -> tuple:
    s = cfg.scheduler
    assert s._target_.endswith("MultiStepLR")
    length = cfg.trainer.max_steps if s.interval == "step" else cfg.trainer.max_epochs
    return (cfg.data.batch_size, cfg.optimizer.weight_decay, cfg.optimizer.nesterov, list(s.milestones), s.gamma,
            s.interval, length)


@pytest.mark.parametrize("name", sorted({**HE_2015, **HE_2016}))
def test_he_recipes(name: str) -> None:
    """He et al.: batch 128, wd 1e-4, lr / 10 at 32k and 48k iterations, stop at 64k, 45k/5k split."""
    cfg = _compose(name)
    assert _schedule(cfg) == (128, 1e-4, False, [32000, 48000], 0.1, "step", 64000)
    assert cfg.data.val_size == 5000
    if name.startswith(("resnet110", "resnet1202", "preact")):  # the 400-iteration warm-up at lr 0.01
        assert (cfg.scheduler.warmup_steps, cfg.scheduler.warmup_start_factor) == (400, 0.1)


@pytest.mark.parametrize("name", sorted(WRN))
def test_wrn_recipes(name: str) -> None:
    """Zagoruyko & Komodakis: 200 epochs, lr x 0.2 at 60/120/160, wd 5e-4, Nesterov, batch 128, no dropout."""
    cfg = _compose(name)
    assert _schedule(cfg) == (128, 5e-4, True, [60, 120, 160], 0.2, "epoch", 200)
    assert cfg.model.drop_rate == 0.0


@pytest.mark.parametrize("name", sorted(DENSENET))
def test_densenet_recipes(name: str) -> None:
    """Huang et al.: 300 epochs, batch 64, lr / 10 at 50% and 75%, wd 1e-4, Nesterov."""
    assert _schedule(_compose(name)) == (64, 1e-4, True, [150, 225], 0.1, "epoch", 300)


@pytest.mark.parametrize("name", sorted(RESNEXT))
def test_resnext_recipes(name: str) -> None:
    """Xie et al.: 300 epochs, lr / 10 at 150 and 225, wd 5e-4, batch 128."""
    assert _schedule(_compose(name)) == (128, 5e-4, False, [150, 225], 0.1, "epoch", 300)


def test_existing_cifar_recipes_say_how_the_cited_network_differs() -> None:
    """Issue 16: a recipe citing another repository's figure names the difference, or says it is the same net."""
    for name, words in (("googlenet_cifar10", "no auxiliary heads"), ("vgg16_bn_cifar10", "one linear layer"),
                        ("preact_resnet18_cifar10", "no closing BN-ReLU"), ("resnext29_cifar10", "1x1 conv of 64"),
                        ("densenet121_cifar10", "on this network"), ("mobilenet_v1_cifar10", "not compared")):
        comment = " ".join(line[1:].strip() for line in (EXPERIMENTS / f"{name}.yaml").read_text().splitlines()
                           if line.startswith("#"))
        assert words in comment, name
    assert "trains the same network" not in (EXPERIMENTS / "googlenet_cifar10.yaml").read_text()


@pytest.mark.slow
def test_resnet20_recipe_trains_one_step(tmp_path: Path) -> None:
    from zoo.run import train

    write_cifar10(tmp_path / "data")
    cfg = _compose("resnet20_cifar10", "trainer=cpu", "++trainer.fast_dev_run=true",
                   f"paths.data_dir={tmp_path / 'data'}", f"paths.output_dir={tmp_path / 'out'}")
    with open_dict(cfg):
        cfg.data.batch_size, cfg.data.eval_batch_size, cfg.data.val_size = 2, 4, 4
        cfg.trainer.precision = "32-true"
    train(cfg)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert 0.0 <= metrics["test/acc"] <= 1.0 and metrics["test/loss"] > 0
