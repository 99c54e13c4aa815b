"""TensorBoard for real: ``tensorboard --logdir RUN`` on a loopback port, its scalars, images and hparams read
back through the HTTP data API the browser uses, and the server stopped by its pid."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from io import BytesIO
from pathlib import Path
from urllib.parse import quote

import pytest
import torch

RUN = "run/version_0"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_run(root: Path) -> None:
    """Event files as train.py's logger writes them: scalars over steps, one image, hparams with final metrics."""
    from pytorch_lightning.loggers import TensorBoardLogger

    logger = TensorBoardLogger(save_dir=str(root), name="run", version=0, default_hp_metric=False)
    for step in range(5):
        logger.log_metrics({"train/loss": 2.0 - 0.25 * step, "val/acc": 0.5 + 0.1 * step}, step=step)
    image = torch.zeros(3, 8, 12)
    image[0, :, :6] = 1.0  # left half red
    logger.experiment.add_image("visualize/gradcam", image, global_step=4)
    logger.log_hyperparams({"optimizer.lr": 0.01, "model.name": "lenet5"}, metrics={"hp/val_acc": 0.9})
    logger.finalize("success")


def _get(base: str, path: str, body: dict | None = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.read()


def _tensorboard() -> list[str]:
    exe = Path(sys.executable).parent / "tensorboard"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "tensorboard.main"]


@pytest.mark.slow
def test_tensorboard_serves_scalars_images_and_hparams(tmp_path: Path) -> None:
    _write_run(tmp_path)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([*_tensorboard(), "--logdir", str(tmp_path), "--host", "127.0.0.1", "--port", str(port),
                             "--load_fast", "false", "--reload_interval", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline, tags = time.monotonic() + 120, {}
        while time.monotonic() < deadline:  # up, and the run's events loaded
            if proc.poll() is not None:
                pytest.fail(f"tensorboard exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
            try:
                tags = json.loads(_get(base, "/data/plugin/scalars/tags"))
                if RUN in tags and "hp/val_acc" in tags[RUN]:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.5)
        assert {"train/loss", "val/acc"} <= set(tags.get(RUN, {})), tags

        # scalars: [wall_time, step, value] per point, exactly what was logged
        points = json.loads(_get(base, f"/data/plugin/scalars/scalars?run={quote(RUN)}&tag={quote('val/acc')}"))
        assert [p[1] for p in points] == [0, 1, 2, 3, 4]
        assert [p[2] for p in points] == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9])

        # images: the tag, its step, and the PNG itself (8 x 12, left half red)
        image_tags = json.loads(_get(base, "/data/plugin/images/tags"))
        assert "visualize/gradcam" in image_tags[RUN]
        entries = json.loads(_get(base, f"/data/plugin/images/images?run={quote(RUN)}"
                                        f"&tag={quote('visualize/gradcam')}&sample=0"))
        assert [e["step"] for e in entries] == [4]
        png = _get(base, f"/data/plugin/images/individualImage?{entries[0]['query']}")
        from PIL import Image

        with Image.open(BytesIO(png)) as im:
            assert im.format == "PNG" and im.size == (12, 8)
            rgb = im.convert("RGB")
            assert rgb.getpixel((0, 0)) == (255, 0, 0) and rgb.getpixel((11, 7)) == (0, 0, 0)

        # hparams: the experiment's settings and metric, and the one session's values
        experiment = json.loads(_get(base, "/data/plugin/hparams/experiment", {"experimentName": ""}))
        assert {h["name"] for h in experiment["hparamInfos"]} == {"optimizer.lr", "model.name"}
        assert [m["name"]["tag"] for m in experiment["metricInfos"]] == ["hp/val_acc"]
        groups = json.loads(_get(base, "/data/plugin/hparams/session_groups", {
            "experimentName": "", "startIndex": 0, "sliceSize": 10,
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
            "colParams": [{"hparam": "optimizer.lr"}, {"hparam": "model.name"},
                          {"metric": {"group": "", "tag": "hp/val_acc"}}]}))
        (group,) = groups["sessionGroups"]
        assert group["hparams"] == {"optimizer.lr": 0.01, "model.name": "lenet5"}
        assert [m["value"] for m in group["metricValues"]] == pytest.approx([0.9])
    finally:
        os.kill(proc.pid, signal.SIGTERM)  # by its pid, as a user's Ctrl-C would
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode is not None
    with pytest.raises(urllib.error.URLError):  # stopped: nothing listens on the port any more
        _get(base, "/data/runs")
