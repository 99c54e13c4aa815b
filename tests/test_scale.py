"""Scale and speed: DDP for real on CPU (gloo, 2 processes), torch.compile, channels_last, the CUDA path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir

from tests.conftest import ROOT, run_cli, run_script

FAST = ["callbacks.progress_bar.refresh_rate=0", "trainer.max_epochs=1"]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
needs_two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs for NCCL DDP")


def _built_trainer(tmp_path: Path, *overrides: str) -> pl.Trainer:
    """The Trainer that train.py would build from these overrides (zoo.run.build_trainer, callbacks and all)."""
    from zoo.run import build_trainer

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"paths.output_dir={tmp_path}", *overrides])
    return build_trainer(cfg)


def test_cpu_and_ddp_cpu_configs_build_the_trainers_they_promise(tmp_path: Path) -> None:
    from pytorch_lightning.strategies import DDPStrategy, SingleDeviceStrategy

    single = _built_trainer(tmp_path, "trainer=cpu")
    assert isinstance(single.strategy, SingleDeviceStrategy) and single.strategy.root_device.type == "cpu"
    assert single.num_devices == 1 and single.precision == "32-true"
    ddp = _built_trainer(tmp_path, "trainer=ddp_cpu")
    assert isinstance(ddp.strategy, DDPStrategy) and ddp.num_devices == 2
    assert ddp.strategy.root_device.type == "cpu" and ddp.strategy.num_processes == 2  # gloo: the real run below


def test_gpu_config_asks_for_bf16_autotuning_and_channels_last(tmp_path: Path) -> None:
    """trainer=gpu's settings reach the Trainer (run here on the CPU, where bf16 autocast also exists)."""
    from zoo.run import _prepare_speed

    trainer = _built_trainer(tmp_path, "trainer=gpu", "trainer.accelerator=cpu", "trainer.devices=1")
    assert trainer.precision == "bf16-mixed" and torch.backends.cudnn.benchmark
    with trainer.precision_plugin.forward_context():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")

    from omegaconf import OmegaConf

    from zoo.training.tasks import ClassificationTask

    task = ClassificationTask(model={"name": "lenet5"}, num_classes=10, in_channels=1,
                              optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1})
    _prepare_speed(OmegaConf.create({"trainer": {"channels_last": True}, "model": {}}), task)
    assert task.net.conv2.weight.is_contiguous(memory_format=torch.channels_last)


def test_fsdp_config_builds_lightnings_fsdp_strategy() -> None:
    """Its keys are real FSDPStrategy arguments (a typo fails here, not on the first GPU machine)."""
    from hydra.utils import instantiate
    from pytorch_lightning.strategies import FSDPStrategy
    from torch.distributed.fsdp import ShardingStrategy

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["trainer=fsdp"])
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.sharding_strategy == ShardingStrategy.FULL_SHARD and strategy._state_dict_type == "full"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what a machine without a GPU says")
@pytest.mark.parametrize(("args", "expected"), [
    (["trainer=gpu"], "No supported gpu backend found!; no CUDA GPU is visible here: trainer=cpu and trainer=ddp_cpu"),
    (["trainer=fsdp", "trainer.accelerator=cpu", "trainer.devices=2"], "strategy `fsdp` requires a GPU accelerator"),
])
def test_gpu_trainer_without_a_gpu_is_one_line(args: list[str], expected: str, tmp_path: Path) -> None:
    proc = run_cli("train.py", *args, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the trainer settings do not work here: "), proc.stderr
    assert expected in lines[0]


@pytest.mark.slow
def test_ddp_cpu_two_processes_one_run_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_script("train.py", "trainer=ddp_cpu", f"hydra.run.dir={run_dir}", *FAST, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # One run directory for both ranks: no per-rank copies of the config, checkpoints or event files.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert len(list(run_dir.rglob("best.ckpt"))) == 1
    assert len(list(run_dir.rglob(".hydra"))) == 1
    trained = json.loads((run_dir / "metrics.json").read_text())

    # The checkpoint loads in a single process, and a single-process test of it matches the DDP test.
    import zoo

    model = zoo.load_pretrained(run_dir / "checkpoints" / "best.ckpt")
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    proc = run_cli("eval.py", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'e'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert single["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)


@pytest.mark.slow
def test_compiled_training_keeps_logging_and_checkpoint_keys(tmp_path: Path) -> None:
    proc = run_script(
        "train.py", "model.compile=true", f"hydra.run.dir={tmp_path}", *FAST,
        "+trainer.limit_train_batches=4", "+trainer.limit_val_batches=1", "test=false", timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4
    assert not [k for k in ckpt["state_dict"] if "_orig_mod" in k]
    assert "net.conv1.weight" in ckpt["state_dict"]
    assert "val/acc" in json.loads((tmp_path / "metrics.json").read_text())


def test_channels_last_keeps_weights_nhwc_and_outputs_equal(tmp_path: Path) -> None:
    proc = run_cli(
        "train.py", "trainer.channels_last=true", f"hydra.run.dir={tmp_path}", *FAST,
        "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=1", "test=false",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    w = ckpt["state_dict"]["net.conv2.weight"]
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    # zoo's loader takes NHWC weights as they are: the rebuilt network computes what the stored weights say
    import zoo

    model = zoo.load_pretrained(tmp_path / "checkpoints" / "last.ckpt")
    torch.testing.assert_close(model.conv2.weight, w.contiguous(), rtol=0, atol=0)


# ---- the CUDA path: runs where a GPU is present, skipped with a reason elsewhere ----------------------


@needs_cuda
def test_gpu_bf16_channels_last_run(tmp_path: Path) -> None:
    proc = run_script("train.py", "trainer=gpu", "model=resnet18", f"hydra.run.dir={tmp_path}", *FAST,
                      "+trainer.limit_train_batches=5", "+trainer.limit_val_batches=2", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.3  # 5 bf16 steps of ResNet-18 learn something: chance is 0.1
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    w = ckpt["state_dict"]["net.conv1.weight"]
    assert w.dtype == torch.float32  # bf16-mixed keeps float32 master weights
    assert w.is_contiguous(memory_format=torch.channels_last)


@needs_cuda
def test_device_side_pipeline_batches_live_on_the_gpu() -> None:
    from zoo.datamodules.vision import MNISTTiny

    dm = MNISTTiny(batch_size=256)
    dm.setup()
    split = dm.splits["train"].to(torch.device("cuda"))
    assert split.x.dtype == torch.uint8 and split.x.is_cuda
    from zoo.datamodules.base import TensorBatches

    x, y = next(iter(TensorBatches(split, 256, dm.train_transform(), shuffle=True)))
    assert x.is_cuda and y.is_cuda and x.dtype == torch.float32 and x.shape == (256, 1, 28, 28)


@needs_two_gpus
def test_ddp_nccl_two_gpus(tmp_path: Path) -> None:
    proc = run_script("train.py", "trainer=ddp", "trainer.devices=2", f"hydra.run.dir={tmp_path}", *FAST, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()
