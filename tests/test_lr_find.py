"""python train.py lr_find=true: Lightning's range test on zoo's nested optimizer.lr."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT
from zoo.lr_find import MAX_LR, MIN_LR, NUM_STEPS
from zoo.training.callbacks.tensorboard import read_scalars

TINY = ["model=mlp", "model.depth=2", "model.width=32", "callbacks.progress_bar.refresh_rate=0", "logger=tensorboard"]


def _train(out: Path, *overrides: str) -> dict:
    import json

    from hydra import compose, initialize_config_dir

    from zoo.run import train

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, *overrides, f"paths.output_dir={out}"])
    train(cfg)
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_lr_find_suggests_a_rate_plots_it_restores_the_weights_and_trains_with_it(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from PIL import Image

    looked = _train(tmp_path / "look", "lr_find=true", "train=false")
    printed = capsys.readouterr().out
    m = re.search(r"lr_find: suggested optimizer\.lr=([0-9.e-]+) \(was 0\.001\)", printed)
    assert m, printed[-2000:]
    lr = float(m.group(1))
    assert MIN_LR < lr < MAX_LR
    with Image.open(tmp_path / "look" / "lr_find.png") as im:
        assert im.format == "PNG"
    # the search trained NUM_STEPS steps on a copy: the network tested afterwards is the untouched one
    untouched = _train(tmp_path / "plain", "train=false")
    assert looked == untouched

    _train(tmp_path / "fit", "lr_find=true", "trainer.max_epochs=1")
    m2 = re.search(r"suggested optimizer\.lr=([0-9.e-]+) \(was 0\.001\) after (\d+) steps", capsys.readouterr().out)
    assert m2 and float(m2.group(1)) == pytest.approx(lr, rel=1e-3)  # same seed, same search
    assert int(m2.group(2)) >= NUM_STEPS - 1  # 63 batches an epoch: max_epochs=1 did not cut the search short
    ckpt = torch.load(tmp_path / "fit" / "checkpoints" / "last.ckpt", weights_only=True)
    used = ckpt["hyper_parameters"]["optimizer"]["options"]["lr"]  # the record names what training used
    assert f"{used:.3g}" == m2.group(1)
    first_lr = min(read_scalars(tmp_path / "fit" / "tensorboard", "train/lr")["train/lr"])[1]
    assert first_lr == pytest.approx(used, rel=1e-6)  # the optimizer's rate at step 0 is the suggestion
