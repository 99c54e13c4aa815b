"""ImageFolder (datamodules/folder.py): real image files decoded in workers, splits, augmentation built once,
training draws that depend on (seed, epoch, position) only, so a run resumes bit-identically with workers,
and an unreadable image ends in one line even when a worker hit it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_cli
from fake_data import write_imagefolder

from zoo.datamodules.base import InMemoryDataModule
from zoo.datamodules.folder import ImageFolder, UnreadableImage
from zoo.errors import ZooError


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_imagefolder_round_trip(tmp_path: Path, fmt: str) -> None:
    written = write_imagefolder(tmp_path, size=(40, 40), fmt=fmt)
    dm = ImageFolder(data_dir=tmp_path, image_size=40, resize=40, num_workers=0, batch_size=4, eval_batch_size=100)
    dm.setup()
    assert dm.class_names == written["classes"] and dm.num_classes == 3 and dm.input_shape == (3, 40, 40)
    x, y = next(iter(dm.val_dataloader()))
    assert x.dtype == torch.uint8 and torch.equal(y, torch.from_numpy(written["val"][1]))
    expected = torch.from_numpy(written["val"][0])
    if fmt == "png":
        assert torch.equal(x, expected)
    else:  # JPEG is lossy on noise, but keeps each image's mean colour (the class signal)
        assert (x.float().mean((2, 3)) - expected.float().mean((2, 3))).abs().max() < 3
    assert torch.equal(dm.class_counts(), torch.tensor([4, 4, 4]))
    xb, yb, seeds = next(iter(dm.train_dataloader()))  # training samples carry their seeds
    assert xb.shape == (4, 3, 40, 40) and xb.dtype == torch.uint8 and seeds.shape == (4,)
    out, targets = dm.on_after_batch_transfer((xb, yb, seeds), 0)
    assert out.dtype == torch.float32 and out.shape == (4, 3, 40, 40) and torch.equal(targets, yb)
    normalised, _ = dm.on_after_batch_transfer((x, y), 0)  # evaluation: only normalised
    mean, std = torch.tensor(dm.mean).view(1, 3, 1, 1), torch.tensor(dm.std).view(1, 3, 1, 1)
    assert torch.allclose(normalised, (x.float() / 255 - mean) / std, atol=1e-6)


def test_imagefolder_validates_on_a_seeded_split_when_asked(tmp_path: Path) -> None:
    write_imagefolder(tmp_path, n_train=10)
    dm = ImageFolder(data_dir=tmp_path, image_size=32, num_workers=0, val_size=6)
    dm.setup()
    assert [len(dm.datasets[s]) for s in ("train", "val", "test")] == [24, 6, 6]
    assert int(dm.class_counts().sum()) == 24
    train, val = dm.source_index["train"], dm.source_index["val"]
    assert not set(train.tolist()) & set(val.tolist()) and len(set(train.tolist()) | set(val.tolist())) == 30
    with pytest.raises(ZooError, match="data.val_size"):
        ImageFolder(data_dir=tmp_path, val_size=30).setup()


def test_imagefolder_is_not_an_in_memory_datamodule_and_builds_its_augmentation_once(tmp_path: Path) -> None:
    write_imagefolder(tmp_path)
    dm = ImageFolder(data_dir=tmp_path, image_size=32, num_workers=0, batch_size=4, augment="standard",
                     aug={"erasing": 0.5})
    assert not isinstance(dm, InMemoryDataModule)
    dm.setup()
    pipeline = dm.device_augment
    assert pipeline is not None and pipeline.k.crop_padding == 0 and pipeline.k.hflip == 0.5  # crops: in workers
    assert pipeline.k.erasing == 0.5 and dm.knobs().crop_padding == 0
    batch = next(iter(dm.train_dataloader()))
    a, _ = dm.on_after_batch_transfer(batch, 0)
    b, _ = dm.on_after_batch_transfer(batch, 0)
    assert dm.device_augment is pipeline  # not rebuilt per batch
    assert torch.equal(a, b)  # the batch's augmentation is seeded by its samples' seeds


def _epoch(dm: ImageFolder) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(t.clone() for t in batch) for batch in dm.train_dataloader()]


def test_training_draws_depend_on_seed_and_epoch_only_not_on_workers(tmp_path: Path) -> None:
    """What makes a resume exact: the same (seed, epoch) gives the same crops with 0 or 2 workers, and
    drawing them leaves the global RNG (dropout's) untouched."""
    import types

    write_imagefolder(tmp_path, n_train=4)
    dms = [ImageFolder(data_dir=tmp_path, image_size=24, num_workers=w, batch_size=4, seed=7) for w in (0, 2)]
    for dm in dms:
        dm.trainer = types.SimpleNamespace(current_epoch=0)
    state = torch.random.get_rng_state()
    runs = [_epoch(dm) for dm in dms]
    assert torch.equal(torch.random.get_rng_state(), state)
    for a, b in zip(*runs):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    dms[0].trainer.current_epoch = 1
    later = _epoch(dms[0])
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(runs[0], later))  # another epoch, other crops
    # A resumed run calls iter() before Lightning sets the epoch; the workers must not start drawing then.
    dms[1].trainer.current_epoch = 0
    early = iter(dms[1].train_dataloader())
    dms[1].trainer.current_epoch = 1
    assert all(torch.equal(u, v) for u, v in zip(next(early), later[0]))


def test_unreadable_image_in_a_worker_is_one_line_naming_the_file(tmp_path: Path) -> None:
    write_imagefolder(tmp_path, fmt="jpg")
    bad = sorted((tmp_path / "train" / "cat").glob("*.jpg"))[0]
    bad.write_bytes(bad.read_bytes()[:40])  # a truncated JPEG
    dm = ImageFolder(data_dir=tmp_path, image_size=24, num_workers=1, batch_size=100)
    with pytest.raises(UnreadableImage) as e:
        next(iter(dm.train_dataloader()))
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"cannot read image {bad}: ")
    assert isinstance(e.value, ZooError) and "Traceback" not in message


def test_a_bad_imagefolder_option_is_refused(tmp_path: Path) -> None:
    write_imagefolder(tmp_path)
    for kwargs, key in (({"image_size": "abc"}, "data.image_size"), ({"num_workers": -1}, "data.num_workers"),
                        ({"scale": [0.5, 2.0]}, "data.scale"), ({"whiten": "zca"}, "data.whiten"),
                        ({"batch_size": True}, "data.batch_size")):
        with pytest.raises(ZooError, match=key):
            ImageFolder(data_dir=tmp_path, **kwargs)
    with pytest.raises(ZooError, match="imagefolder not found"):
        ImageFolder(data_dir=tmp_path / "nothing").setup()


def test_checkpoints_naming_the_old_home_still_resolve() -> None:
    from zoo.datamodules import vision

    assert vision.ImageFolder is ImageFolder  # datamodules.vision.ImageFolder, as older checkpoints store it


@pytest.mark.slow
def test_imagefolder_with_workers_resumes_bit_identically_after_sigkill(tmp_path: Path) -> None:
    """As tests/test_checkpoints.py's exact-resume test, with data=imagefolder and two persistent workers:
    random resized crops in the workers, flips on the device, dropout in the model."""
    from test_checkpoints import _env, _net_weights

    data = tmp_path / "folders"
    write_imagefolder(data, n_train=8, n_val=2, size=(36, 40))
    epochs = 3
    args = ["data=imagefolder", f"data.data_dir={data}", "data.image_size=32", "data.num_workers=2",
            "data.batch_size=4", "data.eval_batch_size=6", "model.dropout=0.5", "trainer.deterministic=true",
            "trainer.accelerator=cpu", "trainer.enable_model_summary=false", f"trainer.max_epochs={epochs}"]
    ref_dir, cut_dir = tmp_path / "ref", tmp_path / "cut"
    ref = run_cli("train.py", *args, f"hydra.run.dir={ref_dir}")  # in this process; the killed run is a process
    assert ref.returncode == 0, ref.stderr[-2000:]

    marker = tmp_path / "stalled"
    stall = ["+callbacks.stall._target_=tests.test_checkpoints.StallAfterEpoch", "+callbacks.stall.epoch=0",
             f"+callbacks.stall.marker={marker}"]
    proc = subprocess.Popen([sys.executable, "train.py", *args, *stall, f"hydra.run.dir={cut_dir}"], cwd=ROOT,
                            env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists(), proc.stderr.read()[-2000:] if proc.poll() is not None else "run never reached epoch 0"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    last = cut_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0

    resumed = run_cli("train.py", f"ckpt_path={last}", "~callbacks.stall", env={"ZOO_LOG_DIR": str(tmp_path / "x")})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _net_weights(ref_dir / "checkpoints" / "last.ckpt"), _net_weights(last)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
