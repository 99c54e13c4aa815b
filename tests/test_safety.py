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
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

import zoo
from tests.conftest import run_cli
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


def _run(*args: str, tmp_path: Path, in_process: bool = True) -> subprocess.CompletedProcess:
    """``python ARGS hydra.run.dir=...``: in this process (:func:`run_cli`), or a process of its own."""
    if in_process:
        return run_cli(*args, f"hydra.run.dir={tmp_path / 'run'}")
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
    from zoo.evaluate import evaluate_ensemble, predict
    from zoo.export import export

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
    """In a process of its own: eval.py's one-line contract (the other end-to-end cases run in this process)."""
    bad = _bad_files(tmp_path)["random"]
    proc = _run("eval.py", f"ckpt_path={bad}", tmp_path=tmp_path, in_process=False)
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


# -- the hostile corpus: checkpoints that load weights-only but whose metadata asks for code ----------------
#
# Each payload is a Hydra config that, given to ``instantiate``, creates MARKER (the oracle test below shows
# it does); each position is a place in a checkpoint's metadata. Nothing read from a file may reach
# ``instantiate``: every case ends in one ``error:`` line, exit 2, and MARKER never appears.


def _pickle_running(command: str) -> bytes:
    return pickle.dumps(_RunsCommand(command))


def _payloads(tmp_path: Path, marker: Path) -> dict[str, dict]:
    import numpy as np

    npy = tmp_path / "evil.npy"
    np.save(npy, np.array([_RunsCommand(f"touch {marker}")], dtype=object), allow_pickle=True)
    existing = tmp_path / "some_file.txt"
    existing.write_text("x")
    return {
        "torch_load": {"_target_": "torch.load", "weights_only": False,
                       "f": {"_target_": "io.BytesIO", "_args_": [_pickle_running(f"touch {marker}")]}},
        "numpy_load": {"_target_": "numpy.load", "file": str(npy), "allow_pickle": True},
        "open": {"_target_": "builtins.open", "_args_": [str(marker), "w"]},
        "write_text": {"_target_": "pathlib.Path.write_text",
                       "_args_": [{"_target_": "pathlib.Path", "_args_": [str(marker)]}, "owned"]},
        "copyfile": {"_target_": "shutil.copyfile", "_args_": [str(existing), str(marker)]},
    }


def _place(position: str, payload: dict) -> dict:
    """Today's layout (and the record's) with ``payload`` at ``position``."""
    from tests.test_checkpoints import legacy_hparams

    hp = legacy_hparams()
    if position == "data":
        hp["data"]["config"] = payload
    elif position == "data_nested":  # inside the augmentation options
        hp["data"]["config"]["aug"] = {"cutout": payload}
    elif position in ("loss", "optimizer", "scheduler"):
        hp[position] = payload
    elif position == "model_kwargs":
        hp["model"]["dropout"] = payload
    elif position == "class_names":
        hp["data"]["facts"] = {**hp["data"]["facts"], "class_names": [payload] * 10}
    elif position.startswith("record_"):  # the record's own layout: names, with the payload as an option
        from zoo.checkpoint import Record

        hp = Record.from_hparams(legacy_hparams(), "good").to_dict()
        group = position[len("record_") :]
        if group == "loss_name":
            hp["loss"] = {"name": payload, "options": {}}
        else:
            hp[group]["options"]["weight" if group == "loss" else "lr" if group == "optimizer" else "aug"] = payload
    return hp


POSITIONS = ["data", "data_nested", "loss", "optimizer", "scheduler", "model_kwargs", "class_names",
             "record_data", "record_loss", "record_optimizer", "record_loss_name"]
PAYLOADS = ["torch_load", "numpy_load", "open", "write_text", "copyfile"]


def _hostile(tmp_path: Path, position: str, payload: str) -> tuple[Path, Path]:
    from tests.test_checkpoints import write_checkpoint

    marker = tmp_path / "MARKER"
    hp = _place(position, _payloads(tmp_path, marker)[payload])
    return write_checkpoint(tmp_path / f"{position}_{payload}.ckpt", hp=hp), marker


def _one_error_line(call, capsys: pytest.CaptureFixture, marker: Path, match: str = "refusing .*") -> str:
    """``call`` under the entry points' error boundary: exit 2, one ``error:`` line, no traceback, no marker."""
    from zoo.cli import user_errors

    with pytest.raises(SystemExit) as exit_info, user_errors():
        call()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_info.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert re.match(f"error: {match}", lines[0]), lines[0]
    assert not marker.exists(), "the payload ran"
    return lines[0]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_each_payload_runs_when_instantiated(tmp_path: Path, payload: str) -> None:
    """The oracle: what the corpus holds is real, Hydra's instantiate would run it."""
    from hydra.utils import instantiate

    marker = tmp_path / "MARKER"
    with contextlib.suppress(Exception):
        instantiate(_payloads(tmp_path, marker)[payload])
    assert marker.exists()


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_record_refuses_code_anywhere(tmp_path: Path, capsys: pytest.CaptureFixture, position: str,
                                          payload: str) -> None:
    """Through load_record, the one reader every consumer (eval, predict, ensembles, export, load_pretrained,
    fine-tuning, resume, torch.hub) starts with."""
    from zoo.checkpoint import load_record

    path, marker = _hostile(tmp_path, position, payload)
    line = _one_error_line(lambda: load_record(path), capsys, marker)
    target = _payloads(tmp_path, marker)[payload]["_target_"]
    assert line == f"error: refusing {path}: it names code to run ({target})"


ENTRY_POINTS = ["eval", "eval_predict", "eval_ensemble", "export", "load_pretrained", "hub", "finetune", "resume"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_entry_point_refuses_a_hostile_record(tmp_path: Path, capsys: pytest.CaptureFixture, entry: str) -> None:
    from zoo.evaluate import evaluate
    from zoo.export import export
    from zoo.run import train

    evil, marker = _hostile(tmp_path, "data", "torch_load")
    out = [f"paths.output_dir={tmp_path / 'out'}", "trainer.accelerator=cpu"]

    def composed(config: str, *overrides: str):
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            return compose(config, overrides=[*overrides, *out])

    calls = {
        "eval": lambda: evaluate(composed("eval", f"ckpt_path={evil}")),
        "eval_predict": lambda: evaluate(composed("eval", f"ckpt_path={evil}", f"predict={tmp_path}")),
        "eval_ensemble": lambda: evaluate(composed("eval", f"ckpt_path=[{evil},{evil}]", "ensemble=mean")),
        "export": lambda: export(evil, "safetensors", tmp_path / "x.safetensors"),
        "load_pretrained": lambda: zoo.load_pretrained(evil),
        "hub": lambda: torch.hub.load(str(ROOT), "lenet5", source="local", pretrained=str(evil), trust_repo=True),
        "finetune": lambda: train(composed("train", f"model.pretrained={evil}", "trainer.max_epochs=1",
                                           "data.val_size=100", "data.test_size=100")),
        "resume": lambda: train(composed("train", f"ckpt_path={evil}")),
    }
    _one_error_line(calls[entry], capsys, marker, match=f"refusing {re.escape(str(evil))}: it names code to run")


def test_eval_py_refuses_a_hostile_record_end_to_end(tmp_path: Path) -> None:
    evil, marker = _hostile(tmp_path, "loss", "write_text")
    proc = _run("eval.py", f"ckpt_path={evil}", tmp_path=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    expected = f"error: refusing {evil}: it names code to run (pathlib.Path.write_text)"
    assert proc.stderr.strip().splitlines() == [expected]
    assert not marker.exists()


def test_export_module_refuses_a_hostile_record_end_to_end(tmp_path: Path) -> None:
    evil, marker = _hostile(tmp_path, "data_nested", "copyfile")
    proc = run_cli("-m", "zoo.export", f"ckpt_path={evil}", "format=safetensors")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.strip().splitlines() == [f"error: refusing {evil}: it names code to run (shutil.copyfile)"]
    assert not marker.exists()


def test_resume_refuses_a_run_directory_that_adds_code_end_to_end(tmp_path: Path) -> None:
    """``train.py ckpt_path=RUN/checkpoints/last.ckpt`` reads RUN/.hydra/overrides.yaml: data, not commands."""
    from tests.test_checkpoints import write_checkpoint

    run = tmp_path / "shared_run"
    (run / "checkpoints").mkdir(parents=True)
    (run / ".hydra").mkdir()
    marker = tmp_path / "MARKER"
    (run / ".hydra" / "overrides.yaml").write_text(
        f"- trainer.max_epochs=1\n- '+callbacks.x={{_target_: pathlib.Path.touch, _args_: [{marker}]}}'\n")
    last = write_checkpoint(run / "checkpoints" / "last.ckpt")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run([sys.executable, "train.py", f"ckpt_path={last}"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: refusing {run / '.hydra' / 'overrides.yaml'}: its "
                                                   "override '+callbacks.x={_target_: pathlib.Path.touch"), lines
    assert not marker.exists()


# -- validated before use -----------------------------------------------------------------------------------


def _with(hp_change) -> dict:
    from tests.test_checkpoints import legacy_hparams

    hp = legacy_hparams()
    hp_change(hp)
    return hp


BAD_RECORDS = {
    "huge_num_classes": (lambda hp: hp.update(num_classes=10**12), r"num_classes must be an integer in \[1, "),
    "zero_channels": (lambda hp: hp.update(in_channels=0), r"in_channels must be an integer in \[1, "),
    "string_classes": (lambda hp: hp.update(num_classes="10"), "num_classes must be an integer"),
    "huge_input": (lambda hp: hp["data"]["facts"].update(input_shape=[3, 100000, 100000]),
                   r"facts.input_shape \[3, 100000, 100000\] is 30,000,000,000 values"),
    "no_model": (lambda hp: hp.pop("model"), "model must be a mapping with a name"),
    "unknown_model": (lambda hp: hp["model"].update(name="os"), "unknown model 'os'"),
    "bad_kwarg": (lambda hp: hp["model"].update(width_of_doom=3), "model 'lenet5' has no option 'width_of_doom'"),
    "other_model": (lambda hp: hp["model"].update(name="alexnet"), "weights do not fit 'alexnet'"),
    "other_classes": (lambda hp: hp.update(num_classes=7), "weights do not fit 'lenet5': shape mismatches"),
    "unknown_option": (lambda hp: hp["optimizer"].update(rocket=1), "optimizer 'sgd' takes no option 'rocket'"),
    "interpolation": (lambda hp: hp["data"]["config"].update(data_dir="${oc.env:HOME}"),
                      r"refusing .*: data.data_dir holds an interpolation \(\$\{oc.env:HOME\}\)"),
    "not_a_mapping": (lambda hp: hp.update(data=[1, 2]), "data must be a mapping"),
    "negative_std": (lambda hp: hp["data"]["facts"].update(std=[-1.0]), "facts.std must hold finite positive"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_a_bad_record_is_one_line_before_anything_is_built(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                            case: str) -> None:
    """Through eval.py's own function; the model is checked against the weights on the meta device."""
    from tests.test_checkpoints import write_checkpoint
    from zoo.evaluate import evaluate

    change, expected = BAD_RECORDS[case]
    path = write_checkpoint(tmp_path / f"{case}.ckpt", hp=_with(change))
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("eval", overrides=[f"ckpt_path={path}", f"paths.output_dir={tmp_path / 'out'}"])
    line = _one_error_line(lambda: evaluate(cfg), capsys, tmp_path / "none", match=".*")
    assert re.search(expected, line) and str(path) in line, line


def test_a_new_record_of_a_newer_zoo_and_unknown_keys_are_one_line(tmp_path: Path) -> None:
    from tests.test_checkpoints import legacy_hparams
    from zoo.checkpoint import Record, read_record

    good = Record.from_hparams(legacy_hparams(), "x").to_dict()
    with pytest.raises(ZooError, match=r"newer than this zoo reads"):
        read_record({"hyper_parameters": {**good, "record_version": 99}}, "f")
    with pytest.raises(ZooError, match="unknown keys in its record: surprise"):
        read_record({"hyper_parameters": {**good, "surprise": 1}}, "f")
    with pytest.raises(ZooError, match=r"refusing f: it names code to run \(os.system\)"):
        read_record({"hyper_parameters": {**good, "surprise": {"_target_": "os.system"}}}, "f")
    with pytest.raises(ZooError, match=r"data '../../x' is not a config of configs/data/"):
        read_record({"hyper_parameters": {**good, "data": {"name": "../../x", "options": {}}}}, "f")
    # a target the configs name, but for another group, or nested, is refused too
    for place in ("loss", "data_nested"):
        with pytest.raises(ZooError, match=r"it names code to run \(torch.optim.SGD\)"):
            read_record({"hyper_parameters": _place(place, {"_target_": "torch.optim.SGD"})}, "f")


def test_the_allow_list_is_what_configs_name(tmp_path: Path) -> None:
    """Computed from configs/: every `_target_:` line of every yaml file is in it, and nothing else."""
    from zoo.checkpoint import allowed_targets, config_targets, group_config

    written = set()
    for path in (ROOT / "configs").rglob("*.yaml"):
        written |= set(re.findall(r"^\s*_target_:\s*([\w.]+)", path.read_text(), flags=re.M))
    assert allowed_targets() == written and "os.system" not in written and len(written) > 30
    for group, targets in config_targets().items():
        for target, options in targets.items():
            assert all(group_config(group, o).get("_target_") == target for o in options)
    assert config_targets()["loss"]["zoo.training.losses.CrossEntropyLoss"] == ("cross_entropy",)


# -- untrusted sizes and leftovers --------------------------------------------------------------------------


def test_a_zip_bomb_is_refused_before_it_is_decompressed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zipfile

    from zoo.weights import load_file

    bomb = tmp_path / "bomb.ckpt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", pickle.dumps({"state_dict": {}}))
        z.writestr("archive/data/0", bytes(64 * 2**20))  # 64 MiB of zeros: a few kB compressed
    assert bomb.stat().st_size < 2**20

    def no_torch_load(*args, **kwargs):
        raise AssertionError("torch.load ran on a zip bomb")

    monkeypatch.setattr(torch, "load", no_torch_load)
    with pytest.raises(ZooError, match=r"refusing .*bomb.ckpt: its archive would expand to 67,1\d\d,\d\d\d bytes"):
        load_file(bomb)
    monkeypatch.undo()
    real = tmp_path / "real.ckpt"
    torch.save({"w": torch.zeros(1000)}, real)
    assert torch.equal(load_file(real)["w"], torch.zeros(1000))  # a real checkpoint is about its own size
    monkeypatch.setenv("ZOO_MAX_CHECKPOINT_BYTES", "1000")  # the cap is configurable
    with pytest.raises(ZooError, match="cap ZOO_MAX_CHECKPOINT_BYTES=1,000"):
        load_file(real)


def test_leftover_temp_files_of_killed_saves_are_cleared(tmp_path: Path) -> None:
    from zoo.training.callbacks.resume_state import SafeCheckpointIO

    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    left = [ckpts / ".last.ckpt.k1l2m3.tmp", ckpts / ".last.ckpt.x9.tmp", ckpts / ".best.ckpt.a1.tmp"]
    for p in left:
        p.write_bytes(b"half a checkpoint")
    (ckpts / "notes.tmp").write_text("not ours")
    io = SafeCheckpointIO()
    io.save_checkpoint({"epoch": 1}, ckpts / "last.ckpt")  # the next save of last.ckpt clears its own
    assert sorted(p.name for p in ckpts.iterdir()) == [".best.ckpt.a1.tmp", "last.ckpt", "notes.tmp"]
    io.load_checkpoint(ckpts / "last.ckpt")  # a resume of the run clears every checkpoint's
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt", "notes.tmp"]


def test_whitening_facts_are_kept_as_plain_tensors_and_checked(tmp_path: Path) -> None:
    """A datamodule's fitted whitening (data.whiten=pca|zca) is a fact: tensors or lists, never code."""
    from tests.test_checkpoints import legacy_hparams, write_checkpoint
    from zoo.checkpoint import Record, load_record

    hp = legacy_hparams()
    matrix = torch.randn(784, 784)
    hp["data"]["facts"]["whitening"] = {"kind": "zca", "mean": torch.zeros(784), "matrix": matrix}
    record = Record.from_hparams(hp, "x")
    path = write_checkpoint(tmp_path / "w.ckpt", hp=record.to_dict())
    _, again = load_record(path)  # weights-only load of the stored tensors
    assert torch.equal(again.facts.whitening["matrix"], matrix) and again.facts.whitening["kind"] == "zca"
    hp["data"]["facts"]["whitening"] = {"kind": {"_target_": "os.system", "_args_": ["id"]}}
    with pytest.raises(ZooError, match=r"refusing x: it names code to run \(os.system\)"):
        Record.from_hparams(hp, "x")
    hp["data"]["facts"]["whitening"] = "zca"
    with pytest.raises(ZooError, match="facts.whitening must be a tensor, a list or a mapping"):
        Record.from_hparams(hp, "x")


def test_eval_builds_its_trainer_as_training_does(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Settings Lightning refuses are one line in eval.py too (zoo.run.build_trainer), not a traceback."""
    from tests.test_checkpoints import write_checkpoint
    from zoo.evaluate import evaluate

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: trainer=gpu works here")
    path = write_checkpoint(tmp_path / "a.ckpt")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("eval", overrides=[f"ckpt_path={path}", "trainer=gpu", f"paths.output_dir={tmp_path / 'o'}"])
    line = _one_error_line(lambda: evaluate(cfg), capsys, tmp_path / "none", match="the trainer settings do not work")
    assert "no CUDA GPU is visible here" in line


def test_a_safetensors_header_is_data_too(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """zoo.export writes the record as JSON metadata; a header that names code is refused like a checkpoint."""
    import json

    pytest.importorskip("safetensors")
    from safetensors.torch import save_file

    from tests.test_checkpoints import legacy_hparams
    from zoo.checkpoint import Record

    net = zoo.create_model("lenet5", num_classes=10, in_channels=1)
    weights = {k: v.contiguous() for k, v in net.state_dict().items()}
    marker = tmp_path / "MARKER"
    payload = _payloads(tmp_path, marker)["open"]
    record = Record.from_hparams(legacy_hparams(), "x").to_dict()
    headers = {"record": {"zoo_record": json.dumps({**record, "model_kwargs": {"dropout": payload}})},
               "old_export": {"zoo_model": json.dumps({"name": "lenet5", "dropout": payload}), "num_classes": "10",
                              "in_channels": "1", "image_size": "28"}}
    for kind, meta in headers.items():
        path = tmp_path / f"{kind}.safetensors"
        save_file(weights, str(path), metadata=meta)
        _one_error_line(lambda p=path: zoo.load_pretrained(p), capsys, marker,
                        match=f"refusing {re.escape(str(path))}: it names code to run \\(builtins.open\\)")
    good = tmp_path / "good.safetensors"
    save_file(weights, str(good), metadata={"zoo_record": json.dumps(record)})
    assert torch.equal(zoo.load_pretrained(good).fc3.weight, net.fc3.weight)


# -- callback states name files that a resumed run deletes ------------------------------------------------------

_RESUMABLE = ["trainer.accelerator=cpu", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
              "scheduler=none", "test=false", "callbacks.diagnostics=null", "callbacks.augmented_batch=null",
              "callbacks=[default,ema,early_stopping]"]  # every callback with a state


@pytest.fixture(scope="module")
def _one_epoch_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real one-epoch run whose ``last.ckpt`` holds the state of every stateful callback zoo configures
    (ModelCheckpoint, EarlyStopping, EMA, EpochCurves, ResumeState), trained once."""
    run = tmp_path_factory.mktemp("resumable") / "run"
    proc = run_cli("train.py", *_RESUMABLE, "trainer.max_epochs=1", f"paths.output_dir={run}",
                   f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run


def _tampered_copy(run: Path, tmp_path: Path, change) -> tuple[Path, Path]:
    """A copy of ``run`` whose last.ckpt's best-checkpoint state was changed by ``change(state, victim)``."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    victim = tmp_path / "notes.txt"
    victim.write_text("a file the run never wrote")
    last = copy / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    states = [s for k, s in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint{'monitor': 'val/acc'")]
    assert len(states) == 1
    state = states[0]
    state["dirpath"] = str(copy / "checkpoints")  # the folder it now lives in: Lightning restores the whole state
    change(state, victim)
    torch.save(ckpt, last)
    return last, victim


def _aim(state: dict, path: object) -> None:
    """What an attacker writes: ``path`` as the best (and k-th best) checkpoint, the one a better epoch replaces."""
    state.update(best_k_models={path: torch.tensor(-1.0)}, kth_best_model_path=path, best_model_path=path,
                 best_model_score=torch.tensor(-1.0), kth_value=torch.tensor(-1.0))


TAMPERED_STATES = {
    "dot_dot": lambda s, v: _aim(s, f"{s['dirpath']}/../../{v.name}"),
    "elsewhere": lambda s, v: _aim(s, str(v)),
    "relative": lambda s, v: _aim(s, f"checkpoints/../{v.name}"),
    "not_a_name": lambda s, v: s.update(last_model_path=7),
    "best_k_not_a_mapping": lambda s, v: s.update(best_k_models=[str(v)]),
}


@pytest.mark.parametrize("case", sorted(TAMPERED_STATES))
def test_resume_refuses_callback_states_naming_files_outside_the_checkpoint_folder(
        _one_epoch_run: Path, tmp_path: Path, case: str) -> None:
    """Lightning's ModelCheckpoint deletes the previous best checkpoint, named by the state it restored from the
    file, when a resumed run saves a better one: the file must not choose what is deleted."""
    last, victim = _tampered_copy(_one_epoch_run, tmp_path, TAMPERED_STATES[case])
    proc = run_cli("train.py", *_RESUMABLE, "trainer.max_epochs=2", f"ckpt_path={last}",
                   f"paths.output_dir={last.parents[1]}", f"hydra.run.dir={last.parents[1]}")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"error: refusing {last}: its ModelCheckpoint state"), lines
    assert victim.read_text() == "a file the run never wrote"


def test_without_the_check_a_tampered_resume_deletes_the_file(_one_epoch_run: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The oracle: with the check switched off, the same resume deletes the file the state names, so the test
    above tests a real attack."""
    import zoo.run
    import zoo.training.callbacks.resume_state as resume_state

    last, victim = _tampered_copy(_one_epoch_run, tmp_path, TAMPERED_STATES["dot_dot"])
    monkeypatch.setattr(zoo.run, "check_callback_states", lambda ckpt, source: None)
    monkeypatch.setattr(resume_state, "check_callback_states", lambda ckpt, source: None)
    proc = run_cli("train.py", *_RESUMABLE, "trainer.max_epochs=2", f"ckpt_path={last}",
                   f"paths.output_dir={last.parents[1]}", f"hydra.run.dir={last.parents[1]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not victim.exists()


def test_lightning_resume_checks_callback_paths_too(_one_epoch_run: Path, tmp_path: Path) -> None:
    """A library user's ``trainer.fit(ckpt_path=...)`` reads through SafeCheckpointIO: the same refusal."""
    from zoo.training.callbacks.resume_state import SafeCheckpointIO

    last, victim = _tampered_copy(_one_epoch_run, tmp_path, TAMPERED_STATES["elsewhere"])
    with pytest.raises(ZooError, match="its ModelCheckpoint state is not what ModelCheckpoint saves: it names"):
        SafeCheckpointIO().load_checkpoint(last)
    assert victim.exists()


def _set(path: tuple[str, ...], value: object):
    def change(states: dict) -> None:
        node = states[next(k for k in states if k.split("{")[0] == path[0])]  # the first with that name
        for k in path[1:-1]:
            node = node[k]
        node[path[-1]] = value
    return change


TAMPERED_VALUES = {
    "rng_not_a_tensor": (_set(("ResumeState", "rng", "torch"), [1, 2, 3]), "its random-generator states"),
    "rng_short_python": (_set(("ResumeState", "rng", "python", "state"), [1] * 3), "its random-generator states"),
    "rng_numpy_kind": (_set(("ResumeState", "rng", "numpy", "kind"), "PCG64"), "its random-generator states"),
    "val_text": (_set(("ResumeState", "val"), {"val/acc": "high"}), "its val numbers"),
    "curves_text": (_set(("EpochCurves", "history"), {"val/acc": {"one": 0.5}}), "its history"),
    "ema_updates": (_set(("EMA", "num_updates"), "many"), "its num_updates"),
    "ema_raw": (_set(("EMA", "raw"), {"net.fc1.weight": "w"}), "its num_updates"),
    "early_stopping_wait": (_set(("EarlyStopping", "wait_count"), -1), "its counters"),
    "checkpoint_score": (_set(("ModelCheckpoint", "best_model_score"), "best"), "its scores"),
    "not_a_mapping": (lambda states: states.update(EMA=None), "its EMA state is not what EMA saves: it is not a map"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED_VALUES))
def test_every_callback_state_is_checked_before_it_is_restored(_one_epoch_run: Path, case: str) -> None:
    """A callback state is data restored into the callback as it is: one that is not what the callback saves
    is refused in one line (it would end in a traceback mid-run), and an untouched one passes."""
    from zoo.training.callbacks.resume_state import check_callback_states

    ckpt = torch.load(_one_epoch_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert {k.split("{")[0] for k in ckpt["callbacks"]} >= {"ModelCheckpoint", "EarlyStopping", "EMA", "EpochCurves",
                                                           "ResumeState"}
    check_callback_states(ckpt, "genuine")
    change, message = TAMPERED_VALUES[case]
    change(ckpt["callbacks"])
    with pytest.raises(ZooError, match=re.escape(message)) as err:
        check_callback_states(ckpt, "tampered.ckpt")
    assert str(err.value).startswith("refusing tampered.ckpt: its ") and "\n" not in str(err.value)
