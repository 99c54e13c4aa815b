"""The contract every image model of the registry keeps (it covers each family as it lands).

Built with 1 and 3 input channels, the small-input stem (``stem="cifar"`` where the model's config has a
``stem`` key) on 28x28 and 32x32 inputs (shapes on the meta device); too-small inputs raise a ZooError naming
the minimum;
``forward_features``/``forward_head`` compose to ``forward``; ``reset_classifier`` changes the output width;
each model overfits a tiny batch; every registered name has a config and every config a registered name, and
``python train.py model=<name> trainer.fast_dev_run=true`` runs for all of them (four Hydra multiruns).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import zoo
from tests.conftest import run_cli
from zoo.errors import ZooError
from zoo.models.layers import AuxLogits
from zoo.registry import UnknownModelError, entry

ROOT = Path(__file__).resolve().parents[1]
MODEL_CONFIGS = ROOT / "configs" / "model"
IMAGE_MODELS = [n for n in zoo.list_models() if entry(n).kind == "image"]
# The papers' deepest and widest CIFAR networks: 15-60 s each to train 20 steps on two cores (measured:
# resnext29_16x64d 17 s; resnet1202's shape check alone 24 s on the meta device), the same code as their small
# siblings, which run in the fast set.
HEAVY = {"resnet1202", "preact_resnet1001", "densenet_bc_250_24", "densenet_bc_190_40", "wide_resnet28_10",
         "resnext29_16x64d"}
# The largest ImageNet members of families whose smaller members run the same blocks here; their configs,
# outputs and weights are checked against torchvision and timm elsewhere (test_models_resnet, _timm, _vit).
GIANTS = {"vit_l_16", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet101_2", "resnet152", "preact_resnet152"}
HEAVY_SLOW = [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in IMAGE_MODELS if n not in GIANTS]
# The two deepest (10 s each to build and run on the meta device): their blocks are resnet110's and
# preact_resnet164's, whose shapes are checked here; their depth is the parameter count of test_models_cifar,
# and that they learn is test_head_composes_and_model_trains (as in tests/test_models_fx.py).
DEEP = {"resnet1202", "preact_resnet1001"}
SHAPES = [p for p in HEAVY_SLOW if (p.values[0] if hasattr(p, "values") else p) not in DEEP]
# Settings for the training test, applied where a model's config has the key.
SMALL = {"width_mult": 0.25, "dropout": 0.0, "init": "kaiming"}


def config(name: str) -> dict:
    path = MODEL_CONFIGS / f"{name}.yaml"
    return OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else {}


def small_kwargs(name: str) -> dict:
    """``stem="cifar"`` where the model's config has a stem (its small-input variant)."""
    return {"stem": "cifar"} if "stem" in config(name) else {}


def logits_of(out: torch.Tensor | AuxLogits) -> torch.Tensor:
    return out.logits if isinstance(out, AuxLogits) else out


@pytest.mark.parametrize("name", SHAPES)
def test_small_inputs_and_channels(name: str) -> None:
    """1 and 3 channels, 28x28 and 32x32, batch 2, eval mode: logits of shape (2, classes) as a plain Tensor.
    Shapes are what is checked, so the models run on the meta device (no init, no arithmetic); the values
    are checked in :func:`test_head_composes_and_model_trains`."""
    kw = small_kwargs(name)
    fixed_size = "input_size" in config(name)  # a fully connected network is built for one input size
    for in_channels, sides in ((3, (32, 28)), (1, (28, 32))):
        for side in sides:
            if fixed_size or side == sides[0]:
                with torch.device("meta"):
                    m = zoo.create_model(name, num_classes=10, in_channels=in_channels, **kw,
                                         **({"input_size": side} if fixed_size else {})).eval()
            with torch.device("meta"):
                out = m(torch.empty(2, in_channels, side, side))
            assert type(out) is torch.Tensor and out.shape == (2, 10), f"{name} at {in_channels}x{side}x{side}"


@pytest.mark.parametrize("name", [n for n in IMAGE_MODELS if n not in DEEP])
def test_too_small_input_names_the_minimum(name: str) -> None:
    """At the registry's minimum the default (ImageNet) stem works; one pixel less raises a ZooError that
    says the minimum, before any convolution (shapes checked on the meta device: nothing is computed)."""
    e = entry(name)
    low = e.min_size
    if low is None:
        assert "input_size" in config(name), f"{name}: register_model(min_size=...) is missing"
        pytest.skip("a fully connected network: any input size it was built for")
    c = e.input_size[0]
    with torch.device("meta"):
        m = zoo.create_model(name, num_classes=10, in_channels=c).eval()
        assert m(torch.empty(1, c, low, low)).shape == (1, 10)
        with pytest.raises(ZooError, match=str(low)):
            m(torch.empty(1, c, low - 1, low - 1))


def smallest_side(name: str, kw: dict) -> int:
    """The smallest of a few sides the model takes (checked on the meta device): training on it is cheapest."""
    with torch.device("meta"):
        m = zoo.create_model(name, num_classes=4, in_channels=1, **kw)  # built once: the deep ones take seconds
        for side in (8, 12, 16, 20):
            try:
                m(torch.empty(4, 1, side, side))
                return side
            except (ZooError, RuntimeError):
                continue
    return 28


@pytest.mark.parametrize("name", HEAVY_SLOW)
def test_head_composes_and_model_trains(name: str) -> None:
    """``forward_head(forward_features(x)) == forward(x)`` and ``reset_classifier`` changes the width; then
    Adam (lr 1e-3) on one fixed batch of 4 images and 4 classes: within 20 steps the loss falls below 3/4 of
    its start (a network that cannot learn stays at ln 4). Inputs are the smallest side the model takes, dropout
    is off, the width small where the config has a ``width_mult``, and an ``init`` option is set to ``kaiming``:
    the papers' N(0, 0.01) inits (ZFNet, the 2012 AlexNet) need their long SGD schedules before the loss moves."""
    kw = small_kwargs(name)
    cfg = config(name)
    kw.update({k: v for k, v in SMALL.items() if k in cfg})
    if name in ("resnet1202", "preact_resnet1001"):
        # fresh, in eval mode (running statistics 0 and 1), 600 unnormalised residual sums overflow to inf:
        # zero-initialised blocks start as the identity (Goyal et al. 2017)
        kw["zero_init_residual"] = True
    side = smallest_side(name, kw)
    torch.manual_seed(0)
    m = zoo.create_model(name, num_classes=4, in_channels=1, **kw)
    x, y = torch.randn(4, 1, side, side), torch.arange(4)
    with torch.no_grad():
        out = m.eval()(x[:2])
        torch.testing.assert_close(m.forward_head(m.forward_features(x[:2])), out, atol=1e-5, rtol=1e-5)
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    losses: list[float] = []
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(logits_of(m(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if losses[-1] < 0.75 * losses[0]:
            break
    assert losses[-1] < 0.75 * losses[0], f"{name} at {side}x{side}: losses {[round(v, 3) for v in losses]}"
    m.reset_classifier(7)
    with torch.no_grad():
        assert m.eval()(x[:2]).shape == (2, 7)


def test_registry_and_configs_agree() -> None:
    configs = {p.stem for p in MODEL_CONFIGS.glob("*.yaml") if not p.stem.startswith("_")}
    registered = set(zoo.list_models())
    assert registered - configs == set(), "registered models without configs/model/<name>.yaml"
    for name in configs:
        cfg = config(name)
        assert cfg.get("name") in registered, f"configs/model/{name}.yaml names {cfg.get('name')!r}"
        assert cfg.get("defaults") == ["_base"], f"configs/model/{name}.yaml must start with defaults: [_base]"
        if entry(cfg["name"]).kind == "image" and "stem" in cfg:
            assert cfg["stem"] in ("auto", "imagenet", "cifar")


def test_list_models_and_model_info() -> None:
    assert zoo.list_models("vgg*") == sorted(f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn"))
    info = zoo.model_info("vgg16")
    assert info["paper"].startswith("Simonyan") and info["year"] == 2014 and info["family"] == "vgg"
    assert info["input_size"] == (3, 224, 224) and info["min_size"] == 32
    assert info["num_params"] == 138_357_544 and info["torchvision"] == "vgg16" and info["kind"] == "image"
    with pytest.raises(UnknownModelError, match="vgg16") as e:
        zoo.create_model("vgg61")
    assert isinstance(e.value, ZooError) and "\n" not in str(e.value)


ONE_STEP = sorted(p.stem for p in MODEL_CONFIGS.glob("*.yaml")
                  if not p.stem.startswith("_") and p.stem not in HEAVY | GIANTS)  # the same code, smaller
CHUNKS = 4  # a few sweeps, not one: pytest-xdist's two workers share the ~60 jobs


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_every_model_config_runs_one_training_step(tmp_path: Path, chunk: int) -> None:
    """``python train.py -m model=a,b,... ++trainer.fast_dev_run=true``: one job per model config (one training
    step and one validation batch each, on the default mnist_tiny data: 1x28x28, so ``stem: auto`` picks each
    model's small-input stem); every fourth config in each of the four chunks. The heavy and giant members are
    left out: their smaller siblings run the same blocks, and a whole-suite run on two cores must stay under ten
    minutes. The sweep runs in this process (:func:`run_cli`), and without the callbacks whose work does not
    depend on the model (the epoch-curves figure, the model summary, the progress bar): they are tested once in
    test_tensorboard, test_foundation and test_training. fast_dev_run already writes no checkpoint and logs
    nothing."""
    names = ONE_STEP[chunk::CHUNKS]
    sweep = tmp_path / "sweep"
    proc = run_cli("train.py", "-m", f"model={','.join(names)}", "++trainer.fast_dev_run=true", "data.batch_size=2",
                   "data.eval_batch_size=2", "test=false", "trainer.enable_model_summary=false",
                   "~callbacks.curves", "~callbacks.model_summary", "~callbacks.progress_bar",
                   "++trainer.enable_progress_bar=false", f"hydra.sweep.dir={sweep}")
    ran = {}
    for job in sweep.iterdir():
        cfg_file, metrics = job / ".hydra" / "config.yaml", job / "metrics.json"
        if cfg_file.is_file() and metrics.is_file():
            ran[OmegaConf.load(cfg_file).model.name] = json.loads(metrics.read_text())
    missing = [n for n in names if n not in ran]
    assert not missing, f"no metrics.json for {missing}; exit {proc.returncode}; stderr:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_one_step_chunks_cover_every_config_once() -> None:
    chunks = [ONE_STEP[c::CHUNKS] for c in range(CHUNKS)]
    assert sorted(n for c in chunks for n in c) == ONE_STEP and len(ONE_STEP) > 50
