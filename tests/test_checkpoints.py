"""Checkpoints: an exact resume after SIGKILL, atomic saves, loading anywhere, fine-tuning, predicting, ensembles."""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]

# Tiny, deterministic runs: 6 batches of 64 digits an epoch, dropout on so the RNG state matters, EMA weights.
TINY = ["trainer.deterministic=true", "trainer.accelerator=cpu", "+trainer.limit_train_batches=6",
        "data.val_size=200", "data.test_size=200", "model.dropout=0.5", "trainer.enable_model_summary=false",
        "scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.5",
        "callbacks=[default,ema]", "callbacks.ema.decay=0.9",
    ]  # the EMA's state resumes too


class StallAfterEpoch:
    """A Lightning callback (imported by the subprocess) that signals, then hangs, after epoch ``epoch``.

    It hangs when the next epoch starts: ``last.ckpt`` for ``epoch`` is written by then (Lightning saves it
    after validation, which follows ``on_train_epoch_end``), so the test can SIGKILL a run at a known
    point instead of racing it.
    """

    def __new__(cls, epoch: int, marker: str):  # built lazily so importing this file needs no Lightning
        import pytorch_lightning as pl

        class _Stall(pl.Callback):
            def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
                if trainer.current_epoch == epoch + 1:
                    Path(marker).write_text(str(os.getpid()))
                    time.sleep(600)

        return _Stall()


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["ZOO_LOG_DIR"] = str(tmp_path / "stray_outputs")  # a resume that picked a new run dir would land here
    return env


def _train(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """``python train.py ARGS`` in this process: the killed run is the one that needs a process of its own."""
    return run_cli("train.py", *args, env=_env(tmp_path))


def _net_weights(path: Path) -> dict[str, torch.Tensor]:
    sd = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in sd.items() if k.startswith("net.")}


@pytest.mark.slow
def test_sigkill_after_epoch_then_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    epochs = 4
    ref_dir, cut_dir = tmp_path / "ref", tmp_path / "cut"
    ref = _train([*TINY, f"trainer.max_epochs={epochs}", f"hydra.run.dir={ref_dir}"], tmp_path)
    assert ref.returncode == 0, ref.stderr[-2000:]

    marker = tmp_path / "stalled"
    stall = ["+callbacks.stall._target_=tests.test_checkpoints.StallAfterEpoch", "+callbacks.stall.epoch=1",
             f"+callbacks.stall.marker={marker}"]
    proc = subprocess.Popen([sys.executable, "train.py", *TINY, f"trainer.max_epochs={epochs}", *stall,
                             f"hydra.run.dir={cut_dir}"], cwd=ROOT, env=_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists(), proc.stderr.read()[-2000:] if proc.poll() is not None else "run never reached epoch 1"
    os.kill(proc.pid, signal.SIGKILL)  # a real kill: no hooks, no finally blocks
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (cut_dir / "metrics.json").exists()
    last = cut_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1
    events_before = set((cut_dir / "tensorboard").glob("events.*"))

    # Only the checkpoint path: the run's overrides and directory come from the run itself.
    resumed = _train([f"ckpt_path={last}", "~callbacks.stall"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not (tmp_path / "stray_outputs").exists()  # continued in the same run directory ...
    assert set((cut_dir / "tensorboard").glob("events.*")) > events_before  # ... and the same TensorBoard run

    a, b = _net_weights(ref_dir / "checkpoints" / "last.ckpt"), _net_weights(last)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ref_m = json.loads((ref_dir / "metrics.json").read_text())
    cut_m = json.loads((cut_dir / "metrics.json").read_text())
    ref_m.pop("checkpoint"), cut_m.pop("checkpoint")
    assert ref_m == cut_m and "test/acc" in ref_m
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["epoch"] == epochs - 1 and ckpt["global_step"] == epochs * 6


# -- atomic saves -------------------------------------------------------------------------------------------


class _ExplodesWhenPickled:
    def __reduce__(self):
        raise RuntimeError("killed mid-save")


def test_a_save_that_dies_midway_leaves_the_previous_checkpoint_readable(tmp_path: Path) -> None:
    from zoo.training.callbacks.resume_state import SafeCheckpointIO
    from zoo.weights import load_file

    io = SafeCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "w": torch.ones(1000)}, path)
    with pytest.raises(RuntimeError, match="killed mid-save"):  # torch.save has written part of the file by now
        io.save_checkpoint({"epoch": 2, "w": torch.zeros(1000), "boom": _ExplodesWhenPickled()}, path)
    assert load_file(path)["epoch"] == 1 and torch.equal(io.load_checkpoint(path)["w"], torch.ones(1000))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temp file left behind
    io.save_checkpoint({"epoch": 3}, path)
    assert load_file(path) == {"epoch": 3}


def test_sigkill_while_saving_leaves_a_readable_checkpoint(tmp_path: Path) -> None:
    """A real kill at an arbitrary moment of a save loop: the file is always a whole checkpoint."""
    from zoo.weights import load_file

    path = tmp_path / "last.ckpt"
    code = ("import sys, torch\nfrom zoo.weights import atomic_save\nw = torch.randn(4_000_000)\ni = 0\n"
            "while True:\n    i += 1\n    atomic_save({'step': i, 'w': w + i}, sys.argv[1])\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT)
    deadline = time.time() + 120
    while not path.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.7)  # several 16 MB saves in, most likely in the middle of one
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ckpt = load_file(path)  # whole: a half-written file would fail here (a leftover .tmp file may remain)
    assert ckpt["step"] >= 1 and ckpt["w"].numel() == 4_000_000


# -- loading anywhere ---------------------------------------------------------------------------------------

MNIST_FACTS = {"name": "mnist_tiny", "task": "classification", "num_classes": 10, "input_shape": [1, 28, 28],
               "mean": [0.1307], "std": [0.3081], "class_names": [str(i) for i in range(10)]}


def legacy_hparams() -> dict:
    """``hyper_parameters`` in the layout train.py wrote before the record: configs with their ``_target_``s,
    the loss under its old module name (zoo.losses, since moved to zoo.training.losses)."""
    return {"model": {"name": "lenet5", "dropout": 0.0, "pretrained": None, "freeze": None}, "num_classes": 10,
            "in_channels": 1, "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1},
            "scheduler": {"_target_": "torch.optim.lr_scheduler.StepLR", "_partial_": True, "step_size": 30,
                          "gamma": 0.1, "interval": "epoch"},
            "loss": {"_target_": "zoo.losses.CrossEntropyLoss", "label_smoothing": 0.1, "weight": None},
            "data": {"config": {"_target_": "datamodules.vision.MNISTTiny", "batch_size": 64, "eval_batch_size": 500,
                                "val_size": 500, "test_size": 500, "split_seed": 0, "seed": 0},
                     "facts": copy.deepcopy(MNIST_FACTS)}}


def write_checkpoint(path: Path, seed: int = 0, val_acc: float | None = None, hp: dict | None = None) -> Path:
    """A LeNet-5 checkpoint in the layout before the record (or with ``hp``), with random weights (and
    optionally a saved val/acc)."""
    import zoo

    torch.manual_seed(seed)
    net = zoo.create_model("lenet5", num_classes=10, in_channels=1)
    hp = legacy_hparams() if hp is None else hp
    callbacks = {"ResumeState": {"val": {"val/acc": val_acc}}} if val_acc is not None else {}
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "hyper_parameters": hp,
                "callbacks": callbacks}, path)
    return path


def test_a_checkpoint_in_the_layout_before_the_record_reads_as_names(tmp_path: Path) -> None:
    """Old targets become config names (zoo.losses.CrossEntropyLoss, since moved, is cross_entropy), and the
    record written back reads the same; eval, predict and ensembles read old checkpoints in the tests below."""
    from zoo.checkpoint import Choice, Record, load_record, read_record

    ckpt, record = load_record(write_checkpoint(tmp_path / "old.ckpt"))
    assert (record.model, record.num_classes, record.in_channels) == ("lenet5", 10, 1)
    assert record.model_kwargs == {"dropout": 0.0}  # pretrained/freeze configure training, not the network
    assert record.loss == Choice("cross_entropy", {"label_smoothing": 0.1, "weight": None})
    assert record.optimizer == Choice("sgd", {"lr": 0.1}) and record.scheduler.name == "step"
    assert record.data.name == "mnist_tiny" and record.facts.mean == (0.1307,) and record.facts.class_names[3] == "3"
    assert record.config("loss")["_target_"] == "zoo.training.losses.CrossEntropyLoss"  # the target from configs/
    assert record.config("optimizer") == {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1,
                                          "momentum": 0.9, "nesterov": False, "weight_decay": 0.0005,
                                          "backbone_lr_scale": 1.0}  # configs/optimizer/sgd.yaml, lr stored
    again = Record.from_dict(record.to_dict(), "again")
    assert again == record and again.to_dict() == record.to_dict()
    assert read_record({"hyper_parameters": record.to_dict()}, "new") == record
    import zoo

    net = zoo.load_pretrained(tmp_path / "old.ckpt")
    assert torch.equal(net.fc3.weight, ckpt["state_dict"]["net.fc3.weight"])


@pytest.mark.parametrize("target", ["datamodules.vision.ImageFolder", "zoo.datamodules.vision.ImageFolder"])
def test_an_image_folder_checkpoint_from_before_folder_py_reads_as_imagefolder(tmp_path: Path, target: str) -> None:
    """ImageFolder lived in datamodules/vision.py when these were written; its module moved on its own."""
    from zoo.checkpoint import load_record

    hp = legacy_hparams()
    hp["data"]["config"] = {"_target_": target, "data_dir": "/data/flowers", "image_size": 224, "resize": None,
                            "scale": [0.08, 1.0], "num_workers": 4, "batch_size": 64, "eval_batch_size": 100,
                            "val_size": 0, "split_seed": 0, "seed": 0, "augment": "standard"}
    _, record = load_record(write_checkpoint(tmp_path / "folder.ckpt", hp=hp))
    assert record.data.name == "imagefolder"
    assert record.data.options["image_size"] == 224 and record.data.options["augment"] == "standard"
    assert record.config("data")["_target_"] == "zoo.datamodules.folder.ImageFolder"


def test_torchvision_state_dict_loads_and_matches_torchvision(tmp_path: Path) -> None:
    import torchvision

    import zoo

    torch.manual_seed(0)
    tv = torchvision.models.resnet18(num_classes=7).eval()
    torch.save(tv.state_dict(), tmp_path / "resnet18.pth")
    ours = zoo.load_pretrained(tmp_path / "resnet18.pth", name="resnet18")  # 7 classes read off the weights
    assert not ours.training
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), atol=1e-5, rtol=1e-5)


def test_strict_mismatch_lists_keys_and_names_the_model_the_file_belongs_to(tmp_path: Path) -> None:
    import zoo
    from zoo.errors import ZooError

    torch.save(zoo.create_model("resnet18", num_classes=10).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ZooError) as e:
        zoo.load_pretrained(tmp_path / "r18.pth", name="resnet34", num_classes=10)
    msg = str(e.value)
    assert "\n" not in msg and "missing keys: " in msg and "layer1.2." in msg  # resnet34 has 3 blocks in layer1
    assert "looks like a 'resnet18'" in msg
    with pytest.raises(ZooError, match="pass name=.*looks like 'resnet18'"):
        zoo.load_pretrained(tmp_path / "r18.pth")
    partial = zoo.load_pretrained(tmp_path / "r18.pth", name="resnet34", num_classes=10, strict=False)
    assert torch.equal(partial.conv1.weight, torch.load(tmp_path / "r18.pth")["conv1.weight"])


# -- DenseNet's CIFAR stem before 2026-12-01 -----------------------------------------------------------------
# zoo's CIFAR stem was conv0-norm0-relu0 until then (the authors' is the bare conv it is now): those checkpoints
# name no stem_norm, their weights hold features.norm0, and they load as the network that was trained.


def old_stem_densenet(name: str, stem: str = "cifar", stem_norm: bool | None = True) -> torch.nn.Module:
    """The network as zoo built it then (1 channel, 10 classes), with seeded BN statistics so that norm0 matters."""
    import zoo

    torch.manual_seed(0)
    net = zoo.create_model(name, num_classes=10, in_channels=1, stem=stem, stem_norm=stem_norm)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.5, 0.5)
    return net.eval()


def densenet_hparams(model: dict, record: bool) -> dict:
    """``hyper_parameters`` of a DenseNet trained on the embedded digits: the layout before the record (``_target_``
    configs, as train.py wrote until 2026-12-01) or the record's; neither names ``stem_norm``."""
    from zoo.checkpoint import Record

    hp = legacy_hparams()
    hp["model"] = {**model, "pretrained": None, "freeze": None, "compile": False}
    hp["data"]["config"]["test_size"] = 32  # one test batch: eval.py stays fast
    return Record.from_hparams(hp, "test").to_dict() if record else hp


def save_densenet(path: Path, weights: dict[str, torch.Tensor], hp: dict) -> Path:
    torch.save({"state_dict": {f"net.{k}": v for k, v in weights.items()}, "hyper_parameters": hp}, path)
    return path


def test_a_densenet_checkpoint_of_the_old_cifar_stem_evaluates_as_trained(tmp_path: Path) -> None:
    """``python train.py model=densenet121`` on the digits before 2026-12-01 (``stem: auto`` -> cifar at 28 px):
    ``eval.py`` rebuilds its conv0-norm0-relu0 stem from the weights and tests the network that was trained."""
    from zoo.checkpoint import load_record

    net = old_stem_densenet("densenet121")
    hp = densenet_hparams({"name": "densenet121", "stem": "auto", "bn_size": 4, "drop_rate": 0.0,
                           "memory_efficient": False}, record=False)
    path = save_densenet(tmp_path / "old.ckpt", net.state_dict(), hp)
    proc = run_cli("eval.py", f"ckpt_path={path}", f"paths.output_dir={tmp_path / 'eval'}", "trainer.accelerator=cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    # oracle: the original network on the checkpoint's own test split, its loss (label smoothing 0.1) by hand
    _, record = load_record(path)
    (x, y), = list(record.datamodule().test_dataloader())
    assert len(y) == 32
    with torch.no_grad():
        logits = net(x)
    assert metrics["test/acc"] == pytest.approx((logits.argmax(1) == y).float().mean().item(), abs=1e-6)
    loss = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1).item()
    assert metrics["test/loss"] == pytest.approx(loss, rel=1e-5)


@pytest.mark.parametrize("record", [False, True], ids=["before_the_record", "record"])
def test_the_old_cifar_stem_loads_by_itself_and_other_stems_are_untouched(tmp_path: Path, record: bool) -> None:
    import zoo
    from zoo.errors import ZooError

    cases = {"old": ("cifar", True), "new": ("cifar", None), "imagenet": ("imagenet", None)}
    for case, (stem, stem_norm) in cases.items():
        net = old_stem_densenet("densenet_bc_100_12", stem, stem_norm)
        hp = densenet_hparams({"name": "densenet_bc_100_12", "stem": stem}, record)
        path = save_densenet(tmp_path / f"{case}.ckpt", net.state_dict(), hp)
        loaded = zoo.load_pretrained(path)
        assert list(loaded.state_dict()) == list(net.state_dict()), case
        assert ("norm0" in dict(loaded.features.named_children())) == (case != "new"), case
        assert ("pool0" in dict(loaded.features.named_children())) == (case == "imagenet"), case
        size = 64 if case == "imagenet" else 16  # the ImageNet stem needs 32 pixels or more
        x = torch.randn(2, 1, size, size)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), net(x), atol=0, rtol=0, msg=case)
        if case == "old":  # a bare state dict of then, with its architecture's name, loads the same way
            bare = zoo.load_pretrained(net.state_dict(), name="densenet_bc_100_12", in_channels=1, num_classes=10)
            with torch.no_grad():
                torch.testing.assert_close(bare(x), net(x), atol=0, rtol=0)
    # a corrupt mixture: norm0's keys there, their shapes wrong; still the one-line mismatch
    sd = old_stem_densenet("densenet_bc_100_12").state_dict()
    sd.update({k: v[:5] for k, v in sd.items() if k.startswith("features.norm0.") and v.ndim == 1})
    path = save_densenet(tmp_path / "corrupt.ckpt", sd, densenet_hparams({"name": "densenet_bc_100_12",
                                                                          "stem": "cifar"}, record))
    with pytest.raises(ZooError) as e:
        zoo.load_pretrained(path)
    msg = str(e.value)
    assert "\n" not in msg and "shape mismatches (file vs model): features.norm0.weight (5,) vs (24,)" in msg


@pytest.mark.slow
def test_a_run_of_the_old_cifar_stem_resumes_as_the_network_it_trained(tmp_path: Path) -> None:
    """A run of then, cut after its first epoch: its checkpoint and run directory name no stem_norm (the option
    came later), and ``ckpt_path=`` continues training that network, where it had stopped."""
    import yaml

    run = tmp_path / "run"
    small = ["model=densenet_bc_100_12", "scheduler=step", "trainer.accelerator=cpu", "+trainer.limit_train_batches=2",
             "+trainer.limit_val_batches=1", "data.batch_size=8", "data.val_size=8", "data.test_size=8",
             "data.eval_batch_size=8", "trainer.enable_model_summary=false", "test=false",
             "callbacks.diagnostics=null", "callbacks.augmented_batch=null", "callbacks.curves=null"]
    proc = _train([*small, "+model.stem_norm=true", "trainer.max_epochs=1", f"hydra.run.dir={run}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    del ckpt["hyper_parameters"]["model_kwargs"]["stem_norm"]  # as a checkpoint written before 2026-12-01
    torch.save(ckpt, last)
    overrides = run / ".hydra" / "overrides.yaml"
    overrides.write_text(yaml.safe_dump([o for o in yaml.safe_load(overrides.read_text()) if "stem_norm" not in o]))
    proc = _train([f"ckpt_path={last}", "trainer.max_epochs=2"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"note: {last} resumes with model.stem_norm=true (what its weights need)" in proc.stdout
    resumed = torch.load(last, weights_only=True)
    assert (resumed["epoch"], resumed["global_step"]) == (1, 4)  # epoch 2 after epoch 1: 2 + 2 steps
    assert resumed["hyper_parameters"]["model_kwargs"]["stem_norm"] is True  # its record now says so
    norm0 = "net.features.norm0.weight"
    assert not torch.equal(resumed["state_dict"][norm0], ckpt["state_dict"][norm0])  # and trained on


# -- fine-tuning --------------------------------------------------------------------------------------------


def test_freeze_backbone_trains_only_the_classifier_and_keeps_batchnorm_statistics() -> None:
    import zoo
    from zoo.training.finetune import classifier_keys, freeze_backbone

    net = zoo.create_model("resnet18", num_classes=10, stem="cifar")
    head = classifier_keys({"name": "resnet18", "stem": "cifar"}, 10, 3)
    assert head == {"fc.weight", "fc.bias"}
    before = {k: v.clone() for k, v in net.state_dict().items()}
    freeze_backbone(net, head)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.5)
    net.train()
    loss = net(torch.randn(4, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    opt.step()
    after = net.state_dict()
    changed = {k for k in before if not k.endswith("num_batches_tracked") and not torch.equal(before[k], after[k])}
    assert changed == head  # running means/vars of every BatchNorm are untouched too


@pytest.mark.slow
def test_finetune_from_pretrained_with_other_classes_and_frozen_backbone(tmp_path: Path) -> None:
    import zoo

    torch.manual_seed(1)
    pre = zoo.create_model("lenet5", num_classes=7, in_channels=1).state_dict()
    torch.save(pre, tmp_path / "pre.pth")
    run = tmp_path / "run"
    proc = run_cli("train.py", "model.pretrained=" + str(tmp_path / "pre.pth"), "model.freeze=backbone",
                   "trainer.max_epochs=1", "+trainer.limit_train_batches=3", "trainer.accelerator=cpu",
                   "data.val_size=100", "data.test_size=100", f"hydra.run.dir={run}", env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    note = "note: pretrained classifier has 7 classes, the data has 10: fc3.bias, fc3.weight re-initialised"
    assert note in proc.stdout
    tuned = _net_weights(run / "checkpoints" / "last.ckpt")
    for k, v in pre.items():
        if not k.startswith("fc3."):
            assert torch.equal(tuned[f"net.{k}"], v), k  # the frozen backbone is exactly the pretrained one
    assert tuned["net.fc3.weight"].shape == (10, 84)


def test_finetuning_from_the_old_cifar_stem_says_the_option_its_weights_need(tmp_path: Path) -> None:
    """A fine-tune builds the network its config asks for; from old-stem weights the one-line mismatch says how to
    ask for theirs, and with it the weights load as they were."""
    import zoo
    from zoo.errors import ZooError
    from zoo.training.finetune import load_pretrained_into

    old = old_stem_densenet("densenet_bc_100_12")
    path = save_densenet(tmp_path / "old.ckpt", old.state_dict(),
                         densenet_hparams({"name": "densenet_bc_100_12", "stem": "cifar"}, record=True))
    head = {"classifier.weight", "classifier.bias"}
    new = zoo.create_model("densenet_bc_100_12", num_classes=10, in_channels=1)
    with pytest.raises(ZooError) as e:
        load_pretrained_into(new, path, "densenet_bc_100_12", head)
    msg = str(e.value)
    assert "\n" not in msg and "unexpected keys: features.norm0.weight" in msg
    assert msg.endswith("(these weights need ++model.stem_norm=true)")
    net = zoo.create_model("densenet_bc_100_12", num_classes=10, in_channels=1, stem_norm=True).eval()
    assert load_pretrained_into(net, path, "densenet_bc_100_12", head) is None
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), old(x), atol=0, rtol=0)


# -- predicting ---------------------------------------------------------------------------------------------


def test_predict_preprocesses_like_the_training_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from hydra import compose, initialize_config_dir
    from PIL import Image

    import zoo
    from zoo.datamodules.vision import load_mnist_5k
    from zoo.evaluate import evaluate

    ckpt = write_checkpoint(tmp_path / "lenet.ckpt")
    x, _ = load_mnist_5k()
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(x[0, 0].numpy()).save(images / "a_exact.png")  # 28x28 grayscale: no resizing at all
    Image.fromarray(x[1, 0].numpy()).convert("RGB").resize((90, 60)).save(images / "b_rgb.jpg")  # any size, RGB
    (images / "notes.txt").write_text("not an image")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("eval", overrides=[f"ckpt_path={ckpt}", f"predict={images}", "topk=3",
                                         f"paths.output_dir={tmp_path / 'out'}"])
        evaluate(cfg)
    rows = list(csv.DictReader(open(tmp_path / "out" / "predictions.csv")))
    assert [Path(r["image"]).name for r in rows] == ["a_exact.png", "b_rgb.jpg"]
    assert list(rows[0]) == ["image", "class_1", "prob_1", "class_2", "prob_2", "class_3", "prob_3"]
    # oracle: the digit normalised by hand with MNIST's mean/std, through the same weights
    with torch.no_grad():
        p = zoo.load_pretrained(ckpt)(((x[:1].float() / 255) - 0.1307) / 0.3081).softmax(1)[0]
    top = p.topk(3)
    assert [r for r in rows[0].values()][1:] == [v for c, pr in zip(top.indices.tolist(), top.values.tolist())
                                                 for v in (str(c), str(round(pr, 6)))]
    assert float(rows[1]["prob_1"]) >= float(rows[1]["prob_2"]) >= float(rows[1]["prob_3"])
    assert "a_exact.png: " in capsys.readouterr().out


# -- ensembles ----------------------------------------------------------------------------------------------


def test_combine_rules_on_hand_computed_probabilities() -> None:
    from zoo.evaluate import combine

    # 3 members, 2 samples, 3 classes
    probs = torch.tensor([[[0.6, 0.4, 0.0], [0.1, 0.5, 0.4]],
                          [[0.0, 0.55, 0.45], [0.1, 0.45, 0.45]],
                          [[0.0, 0.45, 0.55], [0.0, 0.0, 1.0]]])
    assert combine(probs, "mean").tolist() == [1, 2]  # means [0.2, .467, .333], [.067, .317, .617]
    assert combine(probs, "vote").tolist() == [1, 1]  # votes 0,1,2 -> tie, broken by mean prob; 1,1,2 -> 1
    assert combine(probs, "weighted", torch.tensor([1.0, 0.0, 0.0])).tolist() == [0, 1]  # member 0 alone
    assert combine(probs, "weighted", torch.tensor([0.0, 0.0, 2.0])).tolist() == [2, 2]


def test_ensemble_reports_members_and_the_ensemble(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from zoo.evaluate import evaluate

    a = write_checkpoint(tmp_path / "a.ckpt", seed=0, val_acc=0.9)
    b = write_checkpoint(tmp_path / "b.ckpt", seed=1, val_acc=0.3)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        single = evaluate(compose("eval", overrides=[f"ckpt_path={a}", f"paths.output_dir={tmp_path / 's'}",
                                                     "trainer.accelerator=cpu"]))
        same = evaluate(compose("eval", overrides=[f"ckpt_path=[{a},{a},{a}]", "ensemble=vote",
                                                   f"paths.output_dir={tmp_path / 'v'}"]))
        mixed = evaluate(compose("eval", overrides=[f"ckpt_path=[{a},{b}]", "ensemble=weighted",
                                                    f"paths.output_dir={tmp_path / 'w'}"]))
    # Lightning's test loop (eval.py on one checkpoint) and the ensemble's own loop agree on a member
    assert same["members"][0]["test/acc"] == pytest.approx(single["test/acc"], abs=1e-6)
    assert same["test/acc"] == pytest.approx(single["test/acc"], abs=1e-6)  # three identical voters: no change
    assert mixed["weights"] == pytest.approx([0.75, 0.25])
    assert json.loads((tmp_path / "w" / "metrics.json").read_text())["test/acc"] == mixed["test/acc"]
    assert len(mixed["members"]) == 2


def test_resume_command_line_continues_in_the_run_directory_with_its_overrides(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from zoo.cli import resume_overrides
    from zoo.errors import ZooError

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text(
        "- model=lenet5\n- trainer.max_epochs=4\n- +callbacks.stall._target_=x.Y\n- +callbacks.stall.epoch=1\n"
        "- hydra.run.dir=old\n- ckpt_path=somewhere/else.ckpt\n")
    last = run / "checkpoints" / "last.ckpt"
    argv = [f"ckpt_path={last}", "trainer.max_epochs=8", "~callbacks.stall", "~callbacks.lr_monitor"]
    # the run's +callbacks.stall.* and the ~callbacks.stall that undoes them both go; a ~ of a default stays
    assert resume_overrides(argv) == ["model=lenet5", *argv[:2], argv[3], f"hydra.run.dir={run.resolve()}"]
    assert "with its overrides: model=lenet5" in capsys.readouterr().out  # printed before they are applied
    assert resume_overrides([*argv, "hydra.run.dir=elsewhere"]) == [*argv, "hydra.run.dir=elsewhere"]
    assert resume_overrides(["-m", *argv]) == ["-m", *argv]  # a sweep picks its own directories
    # what a run directory may not do on its own: add code to run, or change Hydra; the command line may
    for hostile in ("+callbacks.x._target_=os.system", "+callbacks.x={_target_: os.system}", "hydra.job.name=x",
                    "hydra/launcher=slurm"):
        (run / ".hydra" / "overrides.yaml").write_text(f"- model=lenet5\n- '{hostile}'\n")
        expected = f"refusing .*overrides.yaml: its override '{re.escape(hostile)}' names code"
        with pytest.raises(ZooError, match=expected):
            resume_overrides([f"ckpt_path={last}"])
        assert resume_overrides([f"ckpt_path={last}", hostile])[:2] == ["model=lenet5", f"ckpt_path={last}"]
    (run / ".hydra" / "overrides.yaml").write_text("model: lenet5\n")
    with pytest.raises(ZooError, match="is not a list of overrides"):
        resume_overrides([f"ckpt_path={last}"])
    (tmp_path / "loose.ckpt").touch()
    assert resume_overrides([f"ckpt_path={tmp_path / 'loose.ckpt'}"]) == [f"ckpt_path={tmp_path / 'loose.ckpt'}"]
