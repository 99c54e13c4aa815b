"""Sweeps: grid and Optuna searches through train.py, failed trials that do not end the sweep, the summary.

The end-to-end cases run real sweeps of tiny trials (a few batches of the embedded digits) as
the way a user runs them (in the test process, :func:`run_cli`; the launchers that start processes of
their own, submitit's, as subprocesses); the summary's ordering is checked on hand-made trial directories.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT, run_cli, run_script
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from zoo import sweeps
from zoo.training.callbacks import nan_guard

TINY = ["++trainer.max_epochs=1", "++trainer.limit_train_batches=3", "++trainer.limit_val_batches=1",
        "++trainer.limit_test_batches=1"]


def _rows(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "sweep_summary.csv").open() as f:
        return list(csv.DictReader(f))


def _overrides(trial_dir: Path) -> dict[str, str]:
    items = yaml.safe_load((trial_dir / ".hydra" / "overrides.yaml").read_text())
    return dict(o.lstrip("+").split("=", 1) for o in items)


@pytest.mark.slow
def test_grid_sweep_records_diverged_trials_and_summarises(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    r = run_cli("train.py", "-m", "optimizer=sgd,adam", "optimizer.lr=0.05,1e6", *TINY,
                f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr[-3000:]

    # every combination ran, each in its own numbered directory under the one sweep directory
    trial_dirs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in trial_dirs] == ["0", "1", "2", "3"]
    combos = {(o["optimizer"], float(o["optimizer.lr"])) for o in map(_overrides, trial_dirs)}
    assert combos == {("sgd", 0.05), ("sgd", 1e6), ("adam", 0.05), ("adam", 1e6)}

    # lr=1e6 diverges: those trials stop early, failed with the reason; the others finish
    for d in trial_dirs:
        status = json.loads((d / "status.json").read_text())
        if float(_overrides(d)["optimizer.lr"]) == 1e6:
            assert status["status"] == "failed"
            assert status["reason"].startswith("training diverged: train/loss became ")
            assert not (d / "metrics.json").exists()  # stopped before validation and test
        else:
            assert status["status"] == "ok", status
            metrics = json.loads((d / "metrics.json").read_text())
            assert status["value"] == pytest.approx(metrics["val/acc"])
    assert r.stderr.count("the sweep goes on") == 2

    # the summary: every trial, best first by val/acc, failed ones last with their reasons
    rows = _rows(sweep_dir)
    assert [row["rank"] for row in rows] == ["1", "2", "3", "4"]
    assert [row["status"] for row in rows] == ["ok", "ok", "failed", "failed"]
    accs = [float(row["val/acc"]) for row in rows[:2]]
    assert accs == sorted(accs, reverse=True)
    for row in rows:
        d = Path(row["run_dir"])
        assert d.parent == sweep_dir and row["trial"] == d.name
        assert row["optimizer"] == _overrides(d)["optimizer"]
        if row["status"] == "ok":
            assert float(row["val/acc"]) == pytest.approx(json.loads((d / "metrics.json").read_text())["val/acc"])
        else:
            assert "diverged" in row["reason"] and row["val/acc"] == ""
    md = (sweep_dir / "sweep_summary.md").read_text()
    assert md.count("\n| ") == 5 and "training diverged" in md  # header + 4 trials
    assert (sweep_dir / "sweep_summary.png").is_file()  # the metric against optimizer and optimizer.lr

    # TensorBoard over the sweep directory: each finished trial has an HParams session with its settings
    # and the hp/ metrics of its metrics.json
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import plugin_data_pb2

    mux = EventMultiplexer().AddRunsFromDirectory(str(sweep_dir))
    mux.Reload()
    sessions = {}
    for run in mux.Runs():
        content = mux.PluginRunToTagToContent("hparams").get(run, {})
        if "_hparams_/session_start_info" in content:
            data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
            hp = data.session_start_info.hparams
            sessions[run.split("/")[0]] = (hp["optimizer.lr"].number_value, mux.Scalars(run, "hp/val_acc")[-1].value)
    ok = {row["trial"]: row for row in rows if row["status"] == "ok"}
    assert set(sessions) == set(ok)
    for trial, (lr, val_acc) in sessions.items():
        assert lr == pytest.approx(0.05)
        assert val_acc == pytest.approx(float(ok[trial]["val/acc"]))

    # python -m zoo.sweeps DIR rebuilds the same summary
    before = (sweep_dir / "sweep_summary.csv").read_text()
    (sweep_dir / "sweep_summary.csv").unlink()
    (sweep_dir / "sweep_summary.md").unlink()
    r2 = run_cli("-m", "zoo.sweeps", str(sweep_dir), timeout=120)
    assert r2.returncode == 0, r2.stderr
    assert (sweep_dir / "sweep_summary.csv").read_text() == before
    assert (sweep_dir / "sweep_summary.md").read_text() == md


def _optuna(sweep_dir: Path, seed: int) -> tuple[list[dict[str, str]], dict]:
    r = run_cli("train.py", "hparams_search=optuna", "hydra.sweeper.n_trials=4",
                f"hydra.sweeper.sampler.seed={seed}", "hydra.sweeper.sampler.n_startup_trials=2", "model=lenet5",
                "data.batch_size=choice(0,64)", "++trainer.fast_dev_run=true",
                f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr[-3000:]
    trials = [_overrides(sweep_dir / str(i)) for i in range(4)]
    return trials, yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())


@pytest.mark.slow
def test_optuna_search_is_reproducible_and_survives_failed_trials(tmp_path: Path) -> None:
    a, best_a = _optuna(tmp_path / "a", seed=3)
    b, best_b = _optuna(tmp_path / "b", seed=3)
    assert a == b and best_a == best_b  # same seed, same proposals, same best

    for t in a:  # proposals lie in the search space of configs/hparams_search/_space.yaml
        assert 1e-4 <= float(t["optimizer.lr"]) <= 0.1
        assert 1e-6 <= float(t["optimizer.weight_decay"]) <= 1e-2
        assert 0.0 <= float(t["model.dropout"]) <= 0.5
        assert t["model"] == "lenet5"
    assert len({t["optimizer.lr"] for t in a}) == 4

    # the first (startup) proposals are exactly what Optuna's TPE sampler with that seed draws, in the space's order
    import optuna
    from optuna.distributions import CategoricalDistribution, LogUniformDistribution, UniformDistribution

    space = {"optimizer.lr": LogUniformDistribution(1e-4, 1e-1),
             "optimizer.weight_decay": LogUniformDistribution(1e-6, 1e-2),
             "data.batch_size": CategoricalDistribution([0, 64]), "model.dropout": UniformDistribution(0.0, 0.5)}
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=3, n_startup_trials=2), direction="maximize")
    for proposed in a[:2]:
        trial = study.ask()
        for name, dist in space.items():
            trial._suggest(name, dist)
        assert float(proposed["optimizer.lr"]) == pytest.approx(trial.params["optimizer.lr"], rel=1e-12)
        assert float(proposed["model.dropout"]) == pytest.approx(trial.params["model.dropout"], rel=1e-12)
        assert int(proposed["data.batch_size"]) == trial.params["data.batch_size"]

    # batch_size=0 is a bad setting: that trial fails with its reason, the search goes on, optuna's best
    # and the summary's best agree
    batch = [t["data.batch_size"] for t in a]
    assert "0" in batch and "64" in batch, batch  # seed 3 draws both
    rows = _rows(tmp_path / "a")
    failed = [row for row in rows if row["status"] == "failed"]
    assert len(failed) == batch.count("0")
    assert all("data.batch_size must be a whole number >= 1; got 0" in row["reason"] for row in failed)
    assert rows[0]["status"] == "ok"
    assert float(rows[0]["val/acc"]) == pytest.approx(best_a["best_value"])
    assert best_a["best_params"]["data.batch_size"] == 64


def test_search_direction_follows_optimized_mode() -> None:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for name, sampler in (("optuna", "TPESampler"), ("random", "RandomSampler")):
            cfg = compose("train", overrides=[f"hparams_search={name}"], return_hydra_config=True)
            assert cfg.hydra.sweeper.direction == "maximize"
            assert type(instantiate(cfg.hydra.sweeper.sampler)).__name__ == sampler  # what the sweeper builds
            assert cfg.hydra.mode.name == "MULTIRUN"
            assert set(cfg.hydra.sweeper.params) == {"model", "optimizer.lr", "optimizer.weight_decay",
                                                     "data.batch_size", "model.dropout"}
        cfg = compose("train", overrides=["hparams_search=optuna", "optimized_metric=val/loss", "optimized_mode=min"],
                      return_hydra_config=True)
        assert cfg.hydra.sweeper.direction == "minimize"
        assert cfg.callbacks.model_checkpoint.mode == "min"


def test_launcher_configs_compose() -> None:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=parallel"], return_hydra_config=True)
        assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
        launcher = cfg.hydra.launcher
        assert launcher._target_.endswith("SlurmLauncher")
        assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node) == ("gpu", 1, 1)


@pytest.mark.slow
def test_submitit_local_launcher_runs_trials(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    r = run_script("train.py", "-m", "hydra/launcher=submitit_local", "data.batch_size=64,0",
                   "++trainer.fast_dev_run=true", f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert any((sweep_dir / ".submitit").iterdir())  # the jobs went through submitit
    rows = _rows(sweep_dir)
    assert [(row["data.batch_size"], row["status"]) for row in rows] == [("64", "ok"), ("0", "failed")]
    assert 0.0 <= float(rows[0]["val/acc"]) <= 1.0


def test_single_run_that_diverges_exits_2_with_one_line(tmp_path: Path) -> None:
    r = run_cli("train.py", "optimizer=sgd", "optimizer.lr=1e6", *TINY, f"hydra.run.dir={tmp_path}")
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: training diverged: train/loss became ")
    assert "Traceback" not in r.stderr
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "failed"


# -- the summary on hand-made trial directories ---------------------------------------------------------


def _trial(root: Path, name: str, overrides: list[str], status: dict | None, metrics: dict | None,
           metric: str = "val/loss", mode: str = "min") -> None:
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"optimized_metric": metric, "optimized_mode": mode}))
    if status is not None:
        (d / "status.json").write_text(json.dumps(status))
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics))


def test_summary_orders_by_objective_and_direction(tmp_path: Path) -> None:
    _trial(tmp_path, "0", ["lr=0.1", "bs=8"], {"status": "ok"}, {"val/loss": 0.9, "val/acc": 0.7, "checkpoint": "x"})
    _trial(tmp_path, "1", ["lr=0.01", "bs=8"], {"status": "failed", "reason": "CUDA out of memory"}, None)
    _trial(tmp_path, "2", ["lr=0.001", "bs=8"], {"status": "ok"}, {"val/loss": 0.3, "val/acc": 0.6})
    _trial(tmp_path, "3", ["lr=1", "bs=8"], {"status": "running"}, None)
    _trial(tmp_path, "10", ["lr=0.5", "bs=8"], None, {"val/loss": math.nan, "val/acc": 0.1})

    trials = sweeps.collect(tmp_path)
    # val/loss is minimised: 0.3 before 0.9; NaN has no value; unfinished before failed
    assert [t.name for t in trials] == ["2", "0", "10", "3", "1"]
    assert [t.status for t in trials] == ["ok", "ok", "ok", "unfinished", "failed"]
    assert trials[-1].reason == "CUDA out of memory"

    csv_path, md_path = sweeps.write_summary(tmp_path)
    rows = _rows(tmp_path)
    assert list(rows[0])[:4] == ["rank", "trial", "status", "val/loss"]  # the objective comes first
    assert "lr" in rows[0] and "bs" not in rows[0]  # one column per varying override
    assert rows[0]["overrides"] == "lr=0.001 bs=8"
    assert "Shared by all trials: `bs=8`" in md_path.read_text()

    maximised = tmp_path / "max"  # the same trials judged by a maximised val/acc: the order of the finished ones flips
    for name, acc in (("0", 0.7), ("1", 0.6), ("2", 0.65)):
        _trial(maximised, name, [f"seed={name}"], {"status": "ok"}, {"val/acc": acc}, metric="val/acc", mode="max")
    assert [t.name for t in sweeps.collect(maximised)] == ["0", "2", "1"]


def test_summary_of_a_directory_without_trials_is_a_clear_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        sweeps.main([str(tmp_path)])
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: no trials in {tmp_path}")


def test_out_of_memory_in_a_sweep_is_recorded_and_the_sweep_goes_on(tmp_path: Path, monkeypatch) -> None:
    from omegaconf import OmegaConf

    def oom(cfg):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.1 GiB total)\nmore")

    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "optimized_metric": "val/acc"})
    monkeypatch.setattr(sweeps, "_hydra_mode", lambda: "MULTIRUN")
    assert sweeps.run_trial(oom, cfg) is None  # the launcher moves on; Optuna marks the trial failed
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["status"] == "failed"
    first_line = "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.1 GiB total)"
    assert status["reason"] == f"OutOfMemoryError: {first_line}"

    monkeypatch.setattr(sweeps, "_hydra_mode", lambda: "RUN")  # a single run raises, for the entry point to report
    with pytest.raises(torch.OutOfMemoryError):
        sweeps.run_trial(oom, cfg)
    assert sweeps.run_trial(lambda cfg: 0.5, cfg) == 0.5
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "ok"


def test_nan_guard_watches_every_step_and_reports_the_first_bad_loss() -> None:
    from types import SimpleNamespace

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    trainer = SimpleNamespace(optimizers=[opt], current_epoch=3)
    guard = nan_guard.NaNGuard(check_every_n_steps=3)
    guard.on_fit_start(trainer, None)
    for i, loss in enumerate([1.0, 2.0, 0.5]):  # finite: nothing happens
        guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(loss)}, None, i)
    guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(math.inf)}, None, 3)
    guard.on_train_batch_end(trainer, None, torch.tensor(math.nan), None, 4)  # not a multiple of 3: no check yet
    with pytest.raises(nan_guard.TrainingDiverged) as e:
        guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(1.0)}, None, 5)
    assert str(e.value) == ("training diverged: train/loss became inf at epoch 3, batch 3 (learning rate 0.5); "
                            "lower optimizer.lr, or clip gradients with trainer.gradient_clip_val")
    guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(math.nan)}, None, 6)
    with pytest.raises(nan_guard.TrainingDiverged, match="became nan at epoch 3, batch 6 "):  # epoch end checks too
        guard.on_train_epoch_end(trainer, None)


def test_nan_guard_stops_a_loss_that_diverges_to_a_finite_value() -> None:
    from types import SimpleNamespace

    trainer = SimpleNamespace(optimizers=[], current_epoch=0)
    guard = nan_guard.NaNGuard(check_every_n_steps=4, diverge_factor=10, diverge_steps=3)
    guard.on_fit_start(trainer, None)
    losses = [2.0, 25.0, 30.0, 1.0, 21.0, 400.0, 3.0, 3.0]  # spikes of 2 steps above 10 x 2.0: not yet
    for i, loss in enumerate(losses):
        guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(loss)}, None, i)
    with pytest.raises(nan_guard.TrainingDiverged, match=r"above 10x its first value \(2\) for 3 steps, "
                                                         r"reaching 60 at epoch 0, batch 10; lower"):
        for i, loss in enumerate([21.0, 22.0, 60.0, 70.0], start=8):
            guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(loss)}, None, i)
    off = nan_guard.NaNGuard(check_every_n_steps=1, diverge_steps=0)
    off.on_fit_start(trainer, None)
    for i, loss in enumerate([1.0] + [1e6] * 50):  # huge but finite: the check is off
        off.on_train_batch_end(trainer, None, {"loss": torch.tensor(loss)}, None, i)


def test_train_py_stops_adam_at_lr_1e4_in_one_line(tmp_path: Path) -> None:
    proc = run_cli("train.py", "optimizer.lr=1e4", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path}",
                   "callbacks.progress_bar.refresh_rate=0", "trainer.enable_model_summary=false")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: training diverged: train/loss stayed above 100x"), lines
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "failed"


def test_failed_trial_tensors_are_gone_when_memory_is_released(tmp_path: Path, monkeypatch) -> None:
    """On a GPU the next trial needs the memory of the failed one: it must be unreachable by empty_cache() time."""
    import weakref

    from omegaconf import OmegaConf

    refs: list[weakref.ref] = []

    def trial(cfg):
        activations = torch.zeros(1000)
        refs.append(weakref.ref(activations))
        raise torch.OutOfMemoryError("CUDA out of memory")

    alive_at_release: list[bool] = []
    monkeypatch.setattr(sweeps, "_free_memory", lambda: alive_at_release.append(refs[0]() is not None))
    monkeypatch.setattr(sweeps, "_hydra_mode", lambda: "MULTIRUN")
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}})
    assert sweeps.run_trial(trial, cfg) is None
    assert alive_at_release == [False]
