"""Every mistake on train.py's command line ends in one ``error:`` line and exit 2, before torch loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli, run_script

CASES = [
    (["seed=-1"], "seed must be a whole number from 0 to 4294967295; got -1"),
    (["seed=abc"], "seed must be a whole number from 0 to 4294967295; got 'abc'"),
    (["model.nope=1"], "Could not override 'model.nope'. To append to your config use +model.nope=1"),
    (["l1=abc"], "l1 must be a number >= 0"),
    (["l1=-0.1"], "l1 must be a number >= 0"),
    (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches must be a whole number >= 1; got 0"),
    (["trainer.max_epochs=abc"], "trainer.max_epochs must be a whole number >= 1; got 'abc'"),
    (["data.batch_size=true"], "data.batch_size must be a whole number >= 1; got True"),
    (["scheduler=step", "scheduler.step_size=-1"], "scheduler.step_size must be a whole number >= 1; got -1"),
    (["hydra.run.dir=/proc/x"], "hydra.run.dir=/proc/x: cannot make that directory"),
    (["hydra.run.dir=README.md"], "hydra.run.dir=README.md is a file, not a directory"),
    (["model=null"], "model=null: name one model; valid: alexnet,"),
    (["~model"], "a model is needed: model=NAME; valid: alexnet,"),
    (["model=lenet5,mlp"], "model=lenet5,mlp names several model options: add -m to run one after the other "
                           "(python train.py -m model=lenet5,mlp)"),
    (["model=../data/mnist"], "unknown model '../data/mnist'; valid: alexnet,"),
    (["optimizer.lr=[1"], "no viable alternative at input '[1'"),
]


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_one_line_and_exit_2_before_torch(args: list[str], expected: str, tmp_path: Path) -> None:
    run_dir = [] if any(a.startswith("hydra.run.dir") for a in args) else [f"hydra.run.dir={tmp_path / 'run'}"]
    proc = run_script("train.py", *args, *run_dir, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing was trained


def test_the_checks_pass_what_is_valid(tmp_path: Path) -> None:
    """The same checks on a valid command line: composing succeeds, values pass, the run directory is made."""
    from zoo import cli

    argv = ["model=mlp", "seed=0", "l1=0.001", "scheduler=step", "scheduler.step_size=3",
            f"hydra.run.dir={tmp_path / 'new' / 'run'}"]
    cli.check_overrides(argv)
    cli.check_run_dir(argv)
    cfg = cli.compose_check("train", argv, ROOT / "configs")
    cli.check_config(cfg)
    assert cfg.model.name == "mlp" and (tmp_path / "new" / "run").is_dir()
    assert cli.compose_check("train", ["-m", "model=lenet5,mlp"]) is None  # sweeps: each trial is Hydra's


def test_an_option_the_model_does_not_have_is_one_line(tmp_path: Path) -> None:
    proc = run_cli("train.py", "+model.nope=1", f"hydra.run.dir={tmp_path}", timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0] == "error: model 'lenet5' has no option 'nope' (configs/model/lenet5.yaml lists its options)"
