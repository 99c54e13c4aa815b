"""The foundation: config composition, the default run end to end, eval from a checkpoint, user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import ROOT, run_cli, run_script

CONFIGS = str(ROOT / "configs")


def test_train_config_composes_with_defaults() -> None:
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="train")
    assert cfg.model.name == "lenet5"
    assert cfg.data._target_ == "zoo.datamodules.vision.MNISTTiny"
    assert cfg.optimizer._partial_ and cfg.scheduler._partial_
    assert cfg.callbacks.model_checkpoint.monitor == cfg.optimized_metric == "val/acc"
    assert "num_classes" not in cfg.model  # classes come from the data, never from a second key


def test_train_config_composes_with_overrides() -> None:
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["optimizer=sgd", "scheduler=step", "trainer.max_epochs=3"])
    assert cfg.optimizer._target_ == "torch.optim.SGD"
    assert cfg.scheduler._target_ == "torch.optim.lr_scheduler.StepLR"
    assert cfg.trainer.max_epochs == 3


def test_eval_config_requires_a_checkpoint() -> None:
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="eval", overrides=["ckpt_path=x.ckpt"])
    assert cfg.ckpt_path == "x.ckpt"
    assert "model" not in cfg and "data" not in cfg  # both come from the checkpoint


def _tensorboard_tags(tb_dir: Path) -> tuple[set[str], bytes]:
    """Scalar tags of every event file in a run, and the HParams plugin's session-start record."""
    tags: set[str] = set()
    hparams = b""
    for event_file in tb_dir.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(event_file))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
        try:
            hparams += acc.PluginTagToContent("hparams").get("_hparams_/session_start_info", b"")
        except KeyError:  # this event file has no HParams record
            pass
    return tags, hparams


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`python train.py` with no overrides but the run directory: the README's default run."""
    run_dir = tmp_path_factory.mktemp("default_run")
    proc = run_cli("train.py", f"hydra.run.dir={run_dir}", "callbacks.progress_bar.refresh_rate=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc.stdout


@pytest.mark.slow
def test_default_run_reaches_97_percent_and_writes_its_run_directory(default_run: tuple[Path, str]) -> None:
    run_dir, stdout = default_run
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("val/acc", "val/loss", "val/acc_top5", "test/acc", "test/loss", "test/acc_top5"):
        assert key in metrics, key
    assert metrics["test/acc"] >= 0.97, metrics
    assert f"run directory: {run_dir}" in stdout
    assert "test/acc=" in stdout


@pytest.mark.slow
def test_default_run_tensorboard_tags(default_run: tuple[Path, str]) -> None:
    run_dir, _ = default_run
    tags, hparams = _tensorboard_tags(run_dir / "tensorboard")
    for tag in ("train/loss_step", "train/loss_epoch", "train/acc", "val/loss", "val/acc", "train/lr",
                "hp/val_acc", "hp/test_acc"):
        assert tag in tags, (tag, sorted(tags))
    # The HParams tab: the run's settings next to its final metrics.
    for setting in (b"model.name", b"lenet5", b"optimizer.lr", b"data.batch_size"):
        assert setting in hparams, setting


@pytest.mark.slow
def test_eval_reproduces_the_training_test_accuracy(default_run: tuple[Path, str], tmp_path: Path) -> None:
    run_dir, _ = default_run
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    proc = run_cli("eval.py", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = json.loads((run_dir / "metrics.json").read_text())
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    assert evaluated["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)
    assert evaluated["test/loss"] == pytest.approx(trained["test/loss"], rel=1e-5)


@pytest.mark.slow
def test_checkpoint_carries_what_rebuilds_the_model(default_run: tuple[Path, str]) -> None:
    import zoo

    run_dir, _ = default_run
    from zoo.checkpoint import read_record

    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    record = read_record(ckpt, "best.ckpt")  # names and plain values only
    assert ckpt["hyper_parameters"]["record_version"] == 1
    assert record.model == "lenet5" and record.num_classes == 10 and record.in_channels == 1
    assert record.facts.mean == (0.1307,) and record.data.name == "mnist_tiny" and record.optimizer.name == "adam"
    model = zoo.load_pretrained(run_dir / "checkpoints" / "best.ckpt")
    assert not model.training
    x = torch.zeros(2, 1, 28, 28)
    assert model(x).shape == (2, 10)


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        ("train.py", ["model=lenet6"], "unknown model 'lenet6'"),
        ("train.py", ["data=mnist_huge"], "unknown data 'mnist_huge'"),
        ("train.py", ["data.batch_size=0"], "data.batch_size must be a whole number >= 1; got 0"),
        ("train.py", ["trainer.max_epochs=-2"], "trainer.max_epochs must be a whole number >= 1; got -2"),
        ("eval.py", ["ckpt_path=/nonexistent/best.ckpt"], "checkpoint not found: /nonexistent/best.ckpt"),
        ("eval.py", [f"ckpt_path={ROOT / 'README.md'}"], "not a readable checkpoint"),
    ],
)
def test_user_errors_end_in_one_line(script: str, args: list[str], expected: str, tmp_path: Path) -> None:
    proc = run_cli(script, *args, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]


def test_unknown_model_error_lists_valid_names(tmp_path: Path) -> None:
    """In a process of its own (the contract of train.py; the cases above run in this one)."""
    proc = run_script("train.py", "model=lenet6", f"hydra.run.dir={tmp_path}")
    assert "did you mean lenet5" in proc.stderr and "valid: " in proc.stderr


def test_create_model_unknown_name_suggests_close_matches() -> None:
    import zoo
    from zoo.registry import UnknownModelError

    with pytest.raises(UnknownModelError, match="did you mean lenet5"):
        zoo.create_model("lenet")


def test_command_line_checks_run_before_torch_loads() -> None:
    """train.py imports zoo.cli to check group names first: that import must not pull in torch."""
    import subprocess
    import sys

    code = "import sys; from zoo import cli; import zoo; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    import zoo

    assert zoo.create_model is zoo.registry.create_model  # the lazy names are the real functions
    assert set(zoo.__all__) <= set(dir(zoo))
