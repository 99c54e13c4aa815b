"""``predict=`` on a multi-label checkpoint prints the labels whose sigmoid passes the loss's threshold (issue 18
item 4's predict, issue 20's brief item 7), on a network whose outputs are fixed by hand."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import nn

from tests.conftest import ROOT

# Output logits fixed by the last layer's bias: sigmoid(4) = 0.982, sigmoid(1) = 0.731, sigmoid(-4) = 0.018.
BIAS = [-4.0, -4.0, -4.0, 4.0, -4.0, -4.0, -4.0, 1.0, -4.0, -4.0]


def _checkpoint(tmp_path: Path, threshold: float) -> Path:
    """A multi_digits MLP checkpoint whose last layer ignores the input and outputs :data:`BIAS`."""
    from zoo.run import build_task

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["data=multi_digits", "model=mlp", f"loss.threshold={threshold}",
                                          f"paths.output_dir={tmp_path}"])
    dm = instantiate(cfg.data)
    dm.setup()
    task = build_task(cfg, dm)
    last = [m for m in task.net.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor(BIAS))
    path = tmp_path / f"multi_{threshold}.ckpt"
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": task.record.to_dict()}, path)
    return path


@pytest.mark.parametrize(("threshold", "labels"), [(0.5, ["3", "7"]), (0.9, ["3"]), (0.99, [])])
def test_predict_prints_the_labels_above_the_threshold(threshold: float, labels: list[str], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    from PIL import Image

    from zoo.evaluate import predict

    ckpt = _checkpoint(tmp_path, threshold)
    Image.new("L", (56, 28), 90).save(tmp_path / "canvas.png")
    rows = predict(str(ckpt), str(tmp_path / "canvas.png"), 5, tmp_path / "out")
    assert rows[0]["labels"] == " ".join(labels)
    read = next(csv.DictReader(open(tmp_path / "out" / "predictions.csv", encoding="utf-8")))
    assert read["labels"] == " ".join(labels)
    assert [round(float(read[f"prob_{i}"]), 3) for i in range(10)] == [round(torch.sigmoid(torch.tensor(b)).item(), 3)
                                                                         for b in BIAS]
    shown = {"3": "3 0.9820", "7": "7 0.7311"}
    line = ", ".join(shown[n] for n in labels) or f"no label above {threshold}"
    assert f"canvas.png: {line}\n" in capsys.readouterr().out
