"""Recipes (configs/experiment/): each composes, names the result it should reach and its source, and trains.

Every recipe runs one fast_dev_run step on small files in the real on-disk formats (tests/fake_data.py),
so the model, data, optimizer and schedule it names really fit together. The numbers of the recipes that
reproduce a public reference are checked against that reference's recipe.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from conftest import ROOT
from fake_data import write_cifar10, write_imagefolder, write_mnist
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from zoo.run import train

EXPERIMENTS = ROOT / "configs" / "experiment"

# Issue 7's recipes -> the model each must train. The recurrent ones come from the recurrent helper.
RECIPES = {
    "lenet5_mnist": "lenet5",
    "alexnet_cifar10": "alexnet",
    "vgg16_bn_cifar10": "vgg16_bn",
    "googlenet_cifar10": "googlenet",
    "resnet18_cifar10": "resnet18",
    "preact_resnet18_cifar10": "preact_resnet18",
    "resnext29_cifar10": "resnext29_32x4d",
    "densenet121_cifar10": "densenet121",
    "mobilenet_v1_cifar10": "mobilenet_v1",
    "resnet50_imagenet": "resnet50",
    "lstm_seq_mnist": "lstm",
    "gru_adding": "gru",
    "lstm_char_text": "lstm",
    # issue 17
    "vit_lite_7_4_cifar10": "vit_lite_7_4",
    "transformer_seq_mnist": "transformer",
    "transformer_adding": "transformer",
    "transformer_copy": "transformer",
    "transformer_char_text": "transformer",
}
ALL = sorted(p.stem for p in EXPERIMENTS.glob("*.yaml") if not p.stem.startswith("_"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MNIST, CIFAR-10 and ImageFolder files, small, where the data configs look for them."""
    root = tmp_path_factory.mktemp("data")
    write_mnist(root, "MNIST")
    write_cifar10(root)
    write_imagefolder(root / "imagefolder")
    return root


def _compose(name: str, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=[f"experiment={name}", *overrides])


def test_every_issue_recipe_exists() -> None:
    missing = sorted(set(RECIPES) - set(ALL))
    assert not missing, f"recipes missing from configs/experiment/: {missing}"


@pytest.mark.parametrize("name", ALL)
def test_every_recipe_composes(name: str) -> None:
    cfg = _compose(name)
    assert cfg.model.name and cfg.data._target_
    if name in RECIPES:
        assert cfg.model.name == RECIPES[name]


@pytest.mark.parametrize("name", sorted(set(RECIPES) & set(ALL)))
def test_recipe_names_its_target_and_source(name: str) -> None:
    text = (EXPERIMENTS / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    comment = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert re.search(r"\d(\.\d+)?%|\d\.\d+", comment), "no target figure in the recipe's comment"
    assert re.search(r"\b(19|20)\d\d\b|github|/", comment), "no source (paper year or public reference)"
    assert f"experiment={name}" in comment, "the comment shows no command"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_trains_one_step(name: str, data_dir: Path, tmp_path: Path) -> None:
    if name not in ALL:
        pytest.fail(f"configs/experiment/{name}.yaml does not exist yet")
    cfg = _compose(name, "trainer=cpu", "++trainer.fast_dev_run=true", f"paths.data_dir={data_dir}",
                   f"paths.output_dir={tmp_path}")
    with open_dict(cfg):  # small batches of the small files; everything else as the recipe says
        cfg.data.batch_size = 2
        for key, value in (("eval_batch_size", 4), ("num_workers", 0)):
            if key in cfg.data:
                cfg.data[key] = value
        cfg.trainer.precision = "32-true"
    value = train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert any(k.startswith("test/") for k in metrics), metrics
    assert all(math.isfinite(v) for k, v in metrics.items() if k != "checkpoint")
    if cfg.optimized_metric.endswith("acc"):
        assert value is not None and 0.0 <= value <= 1.0


def test_cifar_recipes_follow_kuangliu() -> None:
    """kuangliu/pytorch-cifar main.py: SGD 0.1, momentum 0.9, wd 5e-4, cosine over 200 epochs, batch 128, crop+flip."""
    for name in ("resnet18_cifar10", "preact_resnet18_cifar10", "resnext29_cifar10", "densenet121_cifar10",
                 "vgg16_bn_cifar10"):
        cfg = _compose(name)
        assert cfg.data._target_.endswith("CIFAR10") and cfg.data.augment == "standard"
        assert (cfg.optimizer._target_, cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (
            "torch.optim.SGD", 0.1, 0.9, 5e-4)
        assert cfg.scheduler._target_.endswith("CosineAnnealingLR") and cfg.scheduler.T_max in (None, 200)
        assert (cfg.trainer.max_epochs, cfg.data.batch_size) == (200, 128)


def test_resnet50_recipe_follows_torchvision() -> None:
    """torchvision references/classification: SGD 0.1, momentum 0.9, wd 1e-4, lr/10 every 30 epochs, 90 epochs."""
    cfg = _compose("resnet50_imagenet")
    assert cfg.data._target_.endswith("ImageFolder") and cfg.data.image_size == 224
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.1, 0.9, 1e-4)
    assert (cfg.scheduler.step_size, cfg.scheduler.gamma, cfg.trainer.max_epochs) == (30, 0.1, 90)
