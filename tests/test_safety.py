"""A checkpoint never runs code: every entry point refuses a malicious pickle, and bad files end in one line.

The malicious file is a real attack: its pickle calls ``os.system("touch MARKER")`` when unpickled without
``weights_only=True``. Each entry point must refuse it with one ``error:`` line and a non-zero exit, and the
marker file must never appear.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

import zoo
from zoo.errors import ZooError

ROOT = Path(__file__).resolve().parents[1]


class _RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):  # what an attacker writes: unpickling calls os.system(command)
        return (os.system, (self.command,))


def _evil(path: Path, marker: Path, legacy: bool = False) -> Path:
    """A checkpoint-shaped file whose hyper-parameters are the payload."""
    payload = {"state_dict": {"net.fc.weight": torch.zeros(2, 2)}, "hyper_parameters": _RunsCommand(f"touch {marker}")}
    if legacy:  # a plain pickle (the pre-zip format torch.load also reads)
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    else:
        torch.save(payload, path)
    return path


def _run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run([sys.executable, *args, f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _refused(proc: subprocess.CompletedProcess, marker: Path) -> None:
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: refusing to load"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not marker.exists(), "the payload ran"


@pytest.mark.parametrize("entry", ["eval", "resume", "finetune"])
def test_entry_points_refuse_a_code_running_checkpoint(tmp_path: Path, entry: str) -> None:
    marker = tmp_path / "PWNED"
    evil = _evil(tmp_path / "last.ckpt", marker)
    args = {"eval": ["eval.py", f"ckpt_path={evil}"],
            "resume": ["train.py", f"ckpt_path={evil}"],
            "finetune": ["train.py", f"model.pretrained={evil}", "trainer.max_epochs=1"]}[entry]
    _refused(_run(*args, tmp_path=tmp_path), marker)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy_pickle"])
def test_python_entry_points_refuse_a_code_running_checkpoint(tmp_path: Path, legacy: bool) -> None:
    from zoo.export import export
    from zoo.evaluate import evaluate_ensemble, predict

    marker = tmp_path / "PWNED"
    evil = _evil(tmp_path / "model.pth", marker, legacy=legacy)
    calls = [lambda: zoo.load_pretrained(evil), lambda: zoo.load_pretrained(evil, name="lenet5"),
             lambda: export(evil, "onnx", tmp_path / "x.onnx"),
             lambda: predict(str(evil), str(tmp_path), 5, tmp_path / "p"),
             lambda: evaluate_ensemble([str(evil), str(evil)], "mean", tmp_path / "e")]
    for call in calls:
        with pytest.raises(ZooError, match=r"refusing to load .* asks to run code \(.*system\)"):
            call()
    assert not marker.exists()
    # the oracle: the same file, loaded the unsafe way, does run its payload (then fails, for the plain pickle)
    with contextlib.suppress(RuntimeError):
        torch.load(evil, weights_only=False)
    assert marker.exists()


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"net.w": torch.randn(64, 64)}, "hyper_parameters": {}}, good)
    data = good.read_bytes()
    files = {"truncated": data[: len(data) // 2], "random": random.Random(0).randbytes(4096), "empty": b""}
    out = {}
    for kind, content in files.items():
        (tmp_path / f"{kind}.ckpt").write_bytes(content)
        out[kind] = tmp_path / f"{kind}.ckpt"
    (tmp_path / "dir.ckpt").mkdir()
    out["directory"] = tmp_path / "dir.ckpt"
    out["missing"] = tmp_path / "nope.ckpt"
    return out


EXPECTED = {"truncated": "truncated or corrupt", "random": "not a readable checkpoint", "empty": "is empty",
            "directory": "is a directory", "missing": "not found"}


def test_bad_files_give_one_line_through_eval_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from zoo.cli import user_errors
    from zoo.evaluate import evaluate
    from zoo.run import train

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for kind, path in _bad_files(tmp_path).items():
            for config, fn in (("eval", evaluate), ("train", train)):
                cfg = compose(config, overrides=[f"ckpt_path={path}", f"paths.output_dir={tmp_path / 'out'}"])
                with pytest.raises(SystemExit) as exit_info, user_errors():
                    fn(cfg)
                assert exit_info.value.code == 2
                captured = capsys.readouterr().err
                err = [line for line in captured.splitlines() if line.startswith("error: ")]  # (the real CLI: below)
                assert len(err) == 1 and EXPECTED[kind] in err[0] and str(path) in err[0], (kind, captured)
                assert "Traceback" not in captured


def test_bad_file_through_the_real_command_line(tmp_path: Path) -> None:
    bad = _bad_files(tmp_path)["random"]
    proc = _run("eval.py", f"ckpt_path={bad}", tmp_path=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: not a readable checkpoint") and str(bad) in lines[0]


def test_any_random_bytes_end_in_a_user_error(tmp_path: Path) -> None:
    """Random bytes reach the unpickler's internals in many ways (IndexError, KeyError, ...): all are one error."""
    from zoo.errors import ZooError
    from zoo.weights import load_file

    path = tmp_path / "random.ckpt"
    for seed in range(200):
        path.write_bytes(random.Random(seed).randbytes(64 + seed * 16))
        with pytest.raises(ZooError, match="not a readable checkpoint"):
            load_file(path)


def test_lightning_resume_loads_through_zoo(tmp_path: Path) -> None:
    """``trainer.fit(ckpt_path=...)`` reads checkpoints with the trainer's CheckpointIO: ours, weights-only."""
    from zoo.run import build_trainer
    from zoo.training.callbacks.resume_state import SafeCheckpointIO

    marker = tmp_path / "PWNED"
    evil = _evil(tmp_path / "last.ckpt", marker)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.output_dir={tmp_path / 'out'}", "trainer.accelerator=cpu"])
        trainer = build_trainer(cfg)
    assert isinstance(trainer.strategy.checkpoint_io, SafeCheckpointIO)
    with pytest.raises(ZooError, match="refusing to load"):
        trainer.strategy.load_checkpoint(evil)
    assert not marker.exists()
