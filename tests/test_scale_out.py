"""Sweeps on real engines: DDP trials inside a sweep, submitit tasks, the SLURM script, Optuna in SQLite.

The distributed cases are real: two CPU processes talking over gloo, tiny budgets (two training batches).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_script
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from zoo import sweeps

TINY = ["++trainer.max_epochs=1", "++trainer.limit_train_batches=2", "++trainer.limit_val_batches=1",
        "++trainer.limit_test_batches=1", "callbacks.diagnostics=null"]
RANK_1_JOINED = "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2"  # Lightning's line when rank 1 is up


def _rows(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "sweep_summary.csv").open() as f:
        return list(csv.DictReader(f))


def test_process_rank_comes_from_the_launchers_environment(monkeypatch) -> None:
    for var in sweeps._RANK_VARS:
        monkeypatch.delenv(var, raising=False)
    assert sweeps.process_rank() == 0
    monkeypatch.setenv("SUBMITIT_LOCAL_GLOBALID", "3")  # a submitit task before it exported RANK
    assert sweeps.process_rank() == 3
    monkeypatch.setenv("LOCAL_RANK", "1")  # Lightning's DDP child
    assert sweeps.process_rank() == 1
    monkeypatch.setenv("RANK", "0")  # the global rank wins over the local one
    assert sweeps.process_rank() == 0


@pytest.mark.slow
def test_ddp_trials_in_a_sweep_run_once_each_with_two_processes(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "ddp"
    r = run_script("train.py", "-m", "trainer=ddp_cpu", "seed=1,2", *TINY, f"hydra.sweep.dir={sweep_dir}", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert out.count("Launching 2 jobs") == 1  # the rank-1 children did not start the sweep again
    assert out.count("sweep summary:") == 1
    assert out.count(RANK_1_JOINED) == 2  # one second process per trial
    rows = _rows(sweep_dir)
    assert sorted((row["seed"], row["status"]) for row in rows) == [("1", "ok"), ("2", "ok")]
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1"]  # no stray run directories
    for trial in ("0", "1"):
        assert (sweep_dir / trial / "train_ddp_process_1.log").is_file()  # rank 1 ran inside its trial's directory
        assert json.loads((sweep_dir / trial / "status.json").read_text())["status"] == "ok"
    ddp_seed_1 = next(float(row["val/acc"]) for row in rows if row["seed"] == "1")

    # submitit starts the two processes of a trial itself (tasks_per_node=2): they join one DDP run, and it
    # is the same training as Lightning's two processes above (same seed, same shards, same result)
    sub_dir = tmp_path / "submitit"
    r = run_script("train.py", "-m", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2",
                   "trainer=ddp_cpu", "seed=1", *TINY, f"hydra.sweep.dir={sub_dir}", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (row,) = _rows(sub_dir)
    assert row["status"] == "ok"
    assert float(row["val/acc"]) == pytest.approx(ddp_seed_1)
    logs = {p.name: p.read_text() for p in (sub_dir / ".submitit").glob("*/*_log.out")}
    assert len(logs) == 2, sorted(logs)  # one log per task
    assert sum(RANK_1_JOINED in text for text in logs.values()) == 1
    assert not any("unrecognized arguments" in p.read_text() for p in (sub_dir / ".submitit").glob("*/*_log.err"))


def test_slurm_script_is_what_submitit_submits(tmp_path: Path, monkeypatch) -> None:
    """hydra/launcher=slurm with two GPUs and two tasks per trial: the sbatch script the launcher hands to
    ``sbatch`` (a stand-in that keeps it) is submitit's own script for those settings."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
    from submitit.slurm.slurm import _make_sbatch_string

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {tmp_path}/submitted.sh\necho "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for srun before it submits
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    sweep_dir = tmp_path / "sweep"
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                          "hydra.launcher.gpus_per_node=2", "hydra.launcher.tasks_per_node=2",
                                          "trainer=ddp", "trainer.devices=2", f"hydra.sweep.dir={sweep_dir}"],
                      return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    params.pop("_target_")
    launcher = SlurmLauncher(**params)
    launcher.config, launcher.task_function, launcher.hydra_context = cfg, None, None
    monkeypatch.setattr(submitit.core.core.Job, "results", lambda self: ["not run"])  # nothing runs on this machine
    assert launcher.launch([["seed=1"], ["seed=2"]], initial_job_idx=0) == ["not run", "not run"]

    submitted = (tmp_path / "submitted.sh").read_text()
    folder = f"{sweep_dir}/.submitit/%j"
    expected = _make_sbatch_string(
        command=f"{sys.executable} -u -m submitit.core._submit {folder}", folder=folder, job_name=cfg.hydra.job.name,
        partition="gpu", time=1440, nodes=1, ntasks_per_node=2, cpus_per_task=10, gpus_per_node=2, mem="64GB",
        signal_delay_s=120, map_count=2, array_parallelism=64)
    assert submitted == expected
    for line in ("#SBATCH --ntasks-per-node=2", "#SBATCH --gpus-per-node=2", "#SBATCH --partition=gpu",
                 "#SBATCH --array=0-1%2", "#SBATCH --time=1440"):
        assert line in submitted.splitlines()
    assert cfg.trainer.devices == params["tasks_per_node"]  # one task per GPU: what Lightning's SLURM support expects


def _search(sweep_dir: Path, db: Path, n_trials: int, seed: int = 3) -> subprocess.Popen:
    args = ["train.py", "hparams_search=optuna", f"hydra.sweeper.storage=sqlite:///{db}",
            "hydra.sweeper.study_name=lenet", f"hydra.sweeper.n_trials={n_trials}",
            f"hydra.sweeper.sampler.seed={seed}", "hydra.sweeper.sampler.n_startup_trials=1", "model=lenet5",
            "data.batch_size=64",
            "++trainer.fast_dev_run=true", f"hydra.sweep.dir={sweep_dir}"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _finish(p: subprocess.Popen) -> str:
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-3000:]
    return out


def _trial_params(trial_dir: Path) -> dict[str, str]:
    items = yaml.safe_load((trial_dir / ".hydra" / "overrides.yaml").read_text())
    return dict(o.lstrip("+").split("=", 1) for o in items)


@pytest.mark.slow
def test_optuna_study_in_sqlite_survives_a_kill_and_is_shared(tmp_path: Path) -> None:
    import optuna

    db = tmp_path / "optuna.db"
    storage = f"sqlite:///{db}"

    def study_trials() -> list:
        try:
            return optuna.load_study(study_name="lenet", storage=storage).trials
        except KeyError:  # not created yet
            return []

    # a search of 3 trials, killed once its first trial is stored
    first = _search(tmp_path / "a", db, n_trials=3)
    deadline = time.time() + 300
    while not any(t.state.name == "COMPLETE" for t in study_trials()):
        assert first.poll() is None and time.time() < deadline, "the first trial never completed"
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    stored = study_trials()
    done = [t for t in stored if t.state.name == "COMPLETE"]
    # killed mid-search (a fast trial may have finished before the kill landed); a trial running at the kill
    # stays RUNNING in the database
    assert 1 <= len(done) < 3 and len(stored) <= 3

    # the same command again continues the study: its trial is numbered after the stored ones, and TPE proposes it
    # from the stored result (a fresh study with this seed would draw trial 0's values again)
    out = _finish(_search(tmp_path / "b", db, n_trials=1))
    assert "Using an existing study with name 'lenet'" in out
    after = study_trials()
    new = [t for t in after if t.number >= len(stored)]
    assert len(new) == 1 and new[0].state.name == "COMPLETE"
    assert new[0].params["optimizer.lr"] != pytest.approx(done[0].params["optimizer.lr"])
    assert float(_trial_params(tmp_path / "b" / "0")["optimizer.lr"]) == pytest.approx(new[0].params["optimizer.lr"])

    # two processes at once on the one study: every trial of both lands in it, under its own number. Each has its
    # own sampler seed: with the same seed and the same stored trials, two samplers propose the same values
    procs = [_search(tmp_path / name, db, n_trials=1, seed=seed) for name, seed in (("c", 4), ("d", 5))]
    for p in procs:
        _finish(p)
    final = study_trials()
    assert len({t.number for t in final}) == len(final) == len(after) + 2
    complete = {t.number: t for t in final if t.state.name == "COMPLETE"}
    assert len(complete) == len(done) + 3
    for name in ("c", "d"):
        status = json.loads((tmp_path / name / "0" / "status.json").read_text())
        lr = float(_trial_params(tmp_path / name / "0")["optimizer.lr"])
        match = [t for t in complete.values() if t.params["optimizer.lr"] == pytest.approx(lr)]
        assert len(match) == 1 and match[0].value == pytest.approx(status["value"])
