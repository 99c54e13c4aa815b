"""Export: ONNX (in onnxruntime) and TorchScript (in torch) equal PyTorch within 1e-4; safetensors; torch.hub."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import zoo
from tests.conftest import run_cli
from zoo.export import export

ROOT = Path(__file__).resolve().parents[1]

MNIST_FACTS = {"name": "mnist_tiny", "task": "classification", "num_classes": 10, "input_shape": [1, 28, 28],
               "mean": [0.1307], "std": [0.3081], "class_names": [str(i) for i in range(10)]}
ROWS_FACTS = {**MNIST_FACTS, "name": "seq_mnist", "input_shape": [28, 28]}  # a digit read row by row: T x F
CASES = {
    "lenet5": ({"name": "lenet5", "dropout": 0.0}, MNIST_FACTS, 1),
    "lstm": ({"name": "lstm", "hidden_size": 32, "num_layers": 2}, ROWS_FACTS, 28),
}


def write_checkpoint(path: Path, model_cfg: dict[str, Any], facts: dict[str, Any], in_channels: int) -> Path:
    """A checkpoint shaped like train.py's (state_dict under ``net.``, hyper-parameters) with random weights."""
    torch.manual_seed(0)
    net = zoo.create_model(model_cfg["name"], num_classes=facts["num_classes"], in_channels=in_channels,
                           **{k: v for k, v in model_cfg.items() if k != "name"})
    hp = {"model": model_cfg, "num_classes": facts["num_classes"], "in_channels": in_channels,
          "optimizer": {"_target_": "torch.optim.SGD", "lr": 0.1}, "scheduler": None, "loss": None,
          "data": {"config": {"_target_": "zoo.datamodules.vision.MNISTTiny"}, "facts": facts}}
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "hyper_parameters": hp,
                "epoch": 0, "global_step": 0}, path)
    return path


def _batch(name: str, n: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 28, 28, generator=g) if name == "lenet5" else torch.randn(n, 28, 28, generator=g)


@pytest.mark.parametrize("name", sorted(CASES))
def test_onnx_and_torchscript_match_pytorch(tmp_path: Path, name: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    model_cfg, facts, in_ch = CASES[name]
    ckpt = write_checkpoint(tmp_path / f"{name}.ckpt", model_cfg, facts, in_ch)
    x = _batch(name)  # batch 3: the exported example had batch 2, so this checks the dynamic batch axis
    with torch.no_grad():
        expected = zoo.load_pretrained(ckpt)(x).numpy()

    onnx_file = export(ckpt, "onnx", tmp_path / f"{name}.onnx")
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (got_onnx,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(got_onnx, expected, atol=1e-4, rtol=0)

    ts_file = export(ckpt, "torchscript", tmp_path / f"{name}.pt")
    with torch.no_grad():
        got_ts = torch.jit.load(str(ts_file))(x).numpy()
    np.testing.assert_allclose(got_ts, expected, atol=1e-4, rtol=0)
    assert np.abs(expected).max() > 1e-3  # the comparison is not between two zero tensors


def test_safetensors_round_trip_with_and_without_name(tmp_path: Path) -> None:
    model_cfg, facts, in_ch = CASES["lstm"]
    ckpt = write_checkpoint(tmp_path / "lstm.ckpt", model_cfg, facts, in_ch)
    out = export(ckpt, "safetensors", tmp_path / "lstm.safetensors")
    from safetensors.torch import load_file

    reference = zoo.load_pretrained(ckpt)
    assert set(load_file(str(out))) == set(reference.state_dict())
    x = _batch("lstm")
    with torch.no_grad():
        want = reference(x)
        by_meta = zoo.load_pretrained(out)(x)  # the metadata names the model and its sizes
        by_name = zoo.load_pretrained(out, name="lstm", hidden_size=32, num_layers=2)(x)
    assert torch.equal(by_meta, want) and torch.equal(by_name, want)


def test_export_command_line(tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "lenet.ckpt", *CASES["lenet5"])
    ok = run_cli("-m", "zoo.export", f"ckpt_path={ckpt}", "format=torchscript")  # in this process
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "lenet.pt").is_file() and "wrote" in ok.stdout
    # a process of its own: the one-line contract of python -m zoo.export
    bad = subprocess.run([sys.executable, "-m", "zoo.export", f"ckpt_path={ckpt}", "format=tflite"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "onnx, torchscript, safetensors" in bad.stderr


def test_torch_hub_builds_every_registered_model(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    try:
        import hubconf
    finally:
        sys.path.remove(str(ROOT))
    entry_points = sorted(n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith("_"))
    assert entry_points == zoo.list_models()
    torch.manual_seed(0)
    via_hub = torch.hub.load(str(ROOT), "resnet18", source="local", num_classes=10)
    torch.manual_seed(0)
    direct = zoo.create_model("resnet18", num_classes=10)
    assert type(via_hub) is type(direct)
    assert all(torch.equal(a, b) for a, b in zip(via_hub.state_dict().values(), direct.state_dict().values()))
    # pretrained= goes through zoo.load_pretrained
    torch.save(direct.state_dict(), tmp_path / "r18.pth")
    loaded = torch.hub.load(str(ROOT), "resnet18", source="local", pretrained=str(tmp_path / "r18.pth"))
    assert not loaded.training and torch.equal(loaded.fc.weight, direct.fc.weight)
