"""Sweeps: trials that fail without ending the sweep, a guard against diverged training, and the summary.

A sweep (``python train.py -m ...`` or ``hparams_search=optuna``) runs many trials, each in its own
numbered directory under one sweep directory. Three things make it usable:

- :func:`run_trial` wraps ``train``: every trial leaves ``status.json`` (``ok``/``failed`` and the
  reason); in a multirun a failed trial (diverged loss, out of memory, a bad combination of settings)
  is recorded and the sweep goes on, while a single run still ends in one ``error:`` line and exit 2.
- ``zoo.training.callbacks.nan_guard.NaNGuard`` (a Lightning callback) stops a trial whose training loss is
  no longer finite, instead of training on garbage for the remaining epochs.
- :class:`SweepSummary` (a Hydra callback) writes ``sweep_summary.csv`` and ``sweep_summary.md`` in
  the sweep directory at the end of a multirun, best trial first, and ``sweep_summary.png``: the optimised
  metric against each varied setting; ``python -m zoo.sweeps DIR``
  rebuilds them for any existing sweep directory.

A trial may itself train on several processes (``trainer=ddp_cpu``, ``trainer=ddp``): :func:`trial_processes`
makes the other ranks join that one trial, whether Lightning starts them (it re-runs the command line) or
submitit does (``hydra.launcher.tasks_per_node=2``).
"""

from __future__ import annotations

import csv
import gc
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, read_write

from zoo.errors import ZooError

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
SUMMARY_CSV = "sweep_summary.csv"
SUMMARY_MD = "sweep_summary.md"
SUMMARY_PNG = "sweep_summary.png"


# -- one trial ---------------------------------------------------------------------------------


def _hydra_mode() -> str:
    """``"RUN"`` or ``"MULTIRUN"``; ``"RUN"`` outside Hydra (compose API, plain calls)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return HydraConfig.get().mode.name
    except ValueError:
        return "RUN"


def failure_reason(exc: BaseException) -> str:
    """One line that says why a trial failed: a ZooError's message, else the exception type and first line."""
    from zoo.cli import _as_user_error

    err = _as_user_error(exc)
    if err is not None:
        text = str(err)
    else:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def write_status(run_dir: Path, status: str, **fields: Any) -> None:
    """``RUN/status.json``: what became of a trial, read back by the sweep summary."""
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"status": status, **fields}
    tmp = run_dir / f".{STATUS_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(run_dir / STATUS_FILE)


def _free_memory() -> None:
    """Give a failed trial's memory back before the next trial of the same process starts."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# Where launchers put a process's rank; the first one set wins (Lightning's order, plus submitit's local tasks).
_RANK_VARS = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "SUBMITIT_LOCAL_GLOBALID")
# What Lightning's DDP launcher and submitit's export write into the first process's environment.
_DIST_VARS = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "RANK", "LOCAL_WORLD_SIZE")


def process_rank() -> int:
    """This process's rank among those training one run; 0 for the first or only one.

    Read from the environment the launchers set, so it is known before a Trainer exists: the run's
    files (status, provenance) are written by rank 0 alone.
    """
    for var in _RANK_VARS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


@contextmanager
def trial_processes(cfg: DictConfig) -> Iterator[None]:
    """Let the other processes of a distributed trial join this trial, and only it.

    Lightning starts DDP ranks 1..N-1 by re-running ``sys.argv`` with ``hydra.run.dir=<HydraConfig run.dir>``;
    in a sweep that command is the whole sweep, so each child launched it again. During a trial the command
    line is the trial's own (its overrides, ``hydra.mode=RUN``) and ``run.dir`` the trial's directory.
    submitit starts ``tasks_per_node`` processes itself: each exports its rank, the world size and a
    shared address (``TorchDistributedEnvironment``), which Lightning takes for processes started outside it.
    Afterwards argv, the environment and the process group are as before, so the next trial starts clean.
    """
    from hydra.core.hydra_config import HydraConfig

    argv, environ = list(sys.argv), {k: os.environ.get(k) for k in _DIST_VARS}
    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    run_dir = hydra_cfg.run.dir if hydra_cfg is not None else None
    if os.environ.get("SUBMITIT_EXECUTOR") == "local" and int(os.environ.get("SUBMITIT_LOCAL_NTASKS") or 1) > 1:
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)  # SLURM jobs: Lightning reads SLURM_*
    if hydra_cfg is not None and hydra_cfg.mode.name == "MULTIRUN":
        sys.argv = [argv[0], *hydra_cfg.overrides.task, "hydra.mode=RUN"]
        with read_write(hydra_cfg):
            hydra_cfg.run.dir = str(cfg.paths.output_dir)
    try:
        yield
    finally:
        sys.argv[:] = argv
        if hydra_cfg is not None:
            with read_write(hydra_cfg):
                hydra_cfg.run.dir = run_dir
        for k, v in environ.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def run_trial(fn: Callable[[DictConfig], float | None], cfg: DictConfig) -> float | None:
    """Run ``fn(cfg)`` (``zoo.run.train``) as one trial and record its status in ``RUN/status.json``.

    In a multirun a failure is recorded with its reason and ``None`` is returned, so the launcher
    moves on to the next trial (Optuna marks a trial that returns ``None`` as failed). A single run
    re-raises, and the entry point turns a user error into one line and exit 2. Ctrl-C records
    ``interrupted`` and exits 130. Only rank 0 of a distributed trial writes the status. The run directory
    is locked while the trial runs (zoo.rundir): a directory that another live run holds is refused before
    anything in it is written.
    """
    from zoo.rundir import locked

    with trial_processes(cfg):
        run_dir = Path(cfg.paths.output_dir)
        with locked(run_dir):
            return _run_locked(fn, cfg, run_dir, write=process_rank() == 0)


def _run_locked(fn: Callable[[DictConfig], float | None], cfg: DictConfig, run_dir: Path, write: bool) -> float | None:
    metric = cfg.get("optimized_metric", "val/acc")
    start = time.time()
    status = write_status if write else lambda *a, **k: None
    status(run_dir, "running", metric=metric)
    reason = None
    try:
        value = fn(cfg)
    except (KeyboardInterrupt, SystemExit) as e:  # Ctrl-C: Lightning shuts down, then calls sys.exit(1)
        if isinstance(e, SystemExit) and e.code in (0, None):
            raise
        status(run_dir, "interrupted", metric=metric, seconds=round(time.time() - start, 1))
        print(f"interrupted: {run_dir / STATUS_FILE} says so; resume with python train.py "
              f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    except Exception as e:
        reason = failure_reason(e)
        status(run_dir, "failed", reason=reason, metric=metric, seconds=round(time.time() - start, 1))
        if _hydra_mode() != "MULTIRUN":
            raise
    if reason is not None:
        _free_memory()  # out of the except block: its traceback, and the failed trial's tensors with it, are gone
        log.error("trial failed: %s", reason)
        print(f"error: trial {run_dir} failed: {reason}; the sweep goes on", file=sys.stderr, flush=True)
        return None
    status(run_dir, "ok", metric=metric, value=value, seconds=round(time.time() - start, 1))
    return value


# -- the summary of a sweep directory ----------------------------------------------------------


@dataclass
class Trial:
    """What the summary knows about one trial directory."""

    name: str
    run_dir: Path
    overrides: list[str]
    status: str
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    metric: str = "val/acc"
    mode: str = "max"

    @property
    def objective(self) -> float | None:
        v = self.metrics.get(self.metric)
        return None if v is None or math.isnan(v) else v


def _natural_key(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_trial(run_dir: Path, sweep_dir: Path) -> Trial:
    """A trial from its directory: ``.hydra/`` (overrides, objective), ``status.json``, ``metrics.json``."""
    overrides = _read_yaml(run_dir / ".hydra" / "overrides.yaml") or []
    config = _read_yaml(run_dir / ".hydra" / "config.yaml") or {}
    metric = str(config.get("optimized_metric") or "val/acc")
    mode = str(config.get("optimized_mode") or "max")
    raw = _read_json(run_dir / "metrics.json") or {}
    metrics = {k: float(v) for k, v in raw.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    status_rec = _read_json(run_dir / STATUS_FILE) or {}
    status = status_rec.get("status")
    reason = status_rec.get("reason") or ""
    if status is None:  # a trial from before status files, or one killed before it wrote any
        status = "ok" if metrics else "unfinished"
        reason = "" if metrics else "no status.json and no metrics.json: killed, or not started"
    elif status == "running":
        status, reason = "unfinished", "still running, or killed (out of memory, time limit)"
    elif status == "ok" and metric not in metrics:
        reason = f"finished without {metric}"
    name = str(run_dir.relative_to(sweep_dir)) if run_dir != sweep_dir else run_dir.name
    return Trial(name, run_dir, [str(o) for o in overrides], status, reason, metrics, metric, mode)


def collect(sweep_dir: Path) -> list[Trial]:
    """Every trial under ``sweep_dir`` (a directory with ``.hydra/overrides.yaml``), best first.

    Finished trials are ordered by their objective (``optimized_metric``, ``optimized_mode``),
    then come trials without a value, unfinished ones, and failed ones.
    """
    sweep_dir = Path(sweep_dir)
    dirs = {p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")}
    trials = [read_trial(d, sweep_dir) for d in sorted(dirs, key=lambda d: _natural_key(str(d)))]

    def rank(t: Trial) -> tuple[Any, ...]:
        group = {"ok": 0, "unfinished": 2, "interrupted": 2, "failed": 3}.get(t.status, 2)
        if group == 0 and t.objective is None:
            group = 1
        value = t.objective if t.objective is not None else 0.0
        return (group, -value if t.mode == "max" else value, _natural_key(t.name))

    return sorted(trials, key=rank)


def _split_override(o: str) -> tuple[str, str]:
    key, _, value = o.partition("=")
    return key.lstrip("+~"), value


def _fmt(v: Any) -> str:
    if isinstance(v, str) and re.fullmatch(r"-?\d*\.\d+(e-?\d+)?|-?\d+e-?\d+", v):
        v = float(v)  # a swept value: 0.0003754553966912878 -> 0.0003755
        return f"{v:.4g}"
    if isinstance(v, float):
        return f"{v:.4f}" if math.isfinite(v) and abs(v) < 1e6 else f"{v:.4g}"
    return "" if v is None else str(v)


def varying_settings(trials: list[Trial]) -> tuple[list[dict[str, str]], list[str]]:
    """Each trial's overrides as a dict, and the keys whose value differs between trials (in command-line order)."""
    parsed = [dict(_split_override(o) for o in t.overrides) for t in trials]
    keys: list[str] = []
    for p in parsed:
        keys += [k for k in p if k not in keys]
    return parsed, [k for k in keys if len({p.get(k) for p in parsed}) > 1]


def summary_rows(trials: list[Trial]) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    """The table: column names, one row per trial, and the overrides every trial shares."""
    parsed, varying = varying_settings(trials)
    common = [o for o in (trials[0].overrides if trials else []) if _split_override(o)[0] not in varying]
    metric = trials[0].metric if trials else "val/acc"
    names = sorted({k for t in trials for k in t.metrics}, key=lambda k: (not k.startswith("val/"), k))
    metric_cols = ([metric] if metric in names else []) + [k for k in names if k != metric]
    columns = ["rank", "trial", "status", *metric_cols, *varying, "overrides", "reason", "run_dir"]
    rows = []
    for i, (t, p) in enumerate(zip(trials, parsed), start=1):
        row: dict[str, Any] = {"rank": i, "trial": t.name, "status": t.status}
        row.update({k: t.metrics.get(k) for k in metric_cols})
        row.update({k: p.get(k, "") for k in varying})
        row.update({"overrides": " ".join(t.overrides), "reason": t.reason, "run_dir": str(t.run_dir)})
        rows.append(row)
    return columns, rows, common


def write_summary(sweep_dir: Path | str) -> tuple[Path, Path]:
    """Write ``sweep_summary.csv`` and ``sweep_summary.md`` in ``sweep_dir``; return their paths."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ZooError(f"sweep directory {sweep_dir} does not exist")
    trials = collect(sweep_dir)
    if not trials:
        raise ZooError(f"no trials in {sweep_dir}: expected numbered directories with .hydra/overrides.yaml")
    columns, rows, common = summary_rows(trials)

    csv_path = sweep_dir / SUMMARY_CSV
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})

    md_path = sweep_dir / SUMMARY_MD
    md_path.write_text(_markdown(sweep_dir, trials, columns, rows, common))
    fig = summary_figure(trials)
    if fig is not None:
        import matplotlib.pyplot as plt

        fig.savefig(sweep_dir / SUMMARY_PNG, dpi=100)
        plt.close(fig)
    return csv_path, md_path


def _number(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def summary_figure(trials: list[Trial], max_panels: int = 6) -> Any | None:
    """The optimised metric against each varied setting, one point per trial with a value, the best one starred.

    Numeric settings get a numeric axis (logarithmic when all are positive and span more than a factor of 20,
    as learning rates do); others, one position per value. ``None`` when no setting varies or no trial has a value.
    """
    parsed, varying = varying_settings(trials)
    scored = [(t, p) for t, p in zip(trials, parsed) if t.objective is not None]
    if not varying or not scored:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = varying[:max_panels]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.0), squeeze=False, sharey=True)
    best = trials[0] if trials[0].objective is not None else None
    for ax, key in zip(axes[0], keys):
        values = [p.get(key) for _, p in scored]
        numbers = [_number(v) for v in values]
        if all(n is not None for n in numbers):
            xs: list[float] = [float(n) for n in numbers]  # type: ignore[arg-type]
            if min(xs) > 0 and max(xs) / min(xs) > 20:
                ax.set_xscale("log")
        else:
            labels = sorted({str(v) for v in values}, key=_natural_key)
            xs = [float(labels.index(str(v))) for v in values]
            ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=8)
        ys = [t.objective for t, _ in scored]
        ax.scatter(xs, ys, s=25, color="tab:blue")
        for (t, _), x, y in zip(scored, xs, ys):
            if t is best:
                ax.scatter([x], [y], s=120, marker="*", color="tab:red", zorder=3)
        ax.set_xlabel(key)
        ax.grid(alpha=0.3)
    metric, mode = scored[0][0].metric, scored[0][0].mode
    axes[0][0].set_ylabel(f"{metric} ({mode})")
    missing = len(trials) - len(scored)
    note = f"; {missing} trial{'s' if missing != 1 else ''} without a value not shown" if missing else ""
    fig.suptitle(f"{len(scored)} trials, best starred{note}", fontsize=9)
    fig.tight_layout()
    return fig


def _markdown(sweep_dir: Path, trials: list[Trial], columns: list[str], rows: list[dict[str, Any]],
              common: list[str]) -> str:
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    best = trials[0]
    metric, mode = best.metric, best.mode
    lines = [f"# Sweep summary: {sweep_dir}", ""]
    lines.append(f"{len(trials)} trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ". "
                 f"Ordered by {metric} ({mode}), best first.")
    if best.objective is not None:
        own = [o for o in best.overrides if o not in common]
        lines.append(f"Best: trial {best.name}, {metric} = {_fmt(best.objective)}, `{' '.join(own) or '(defaults)'}`.")
    if common:
        lines.append(f"Shared by all trials: `{' '.join(common)}`.")
    lines += ["", f"Each trial's files are in `{sweep_dir}/<trial>/`; compare the trials in TensorBoard's "
              f"HParams tab: `tensorboard --logdir {sweep_dir}`.", ""]
    shown = [c for c in columns if c not in ("overrides", "run_dir")]
    lines.append("| " + " | ".join(shown) + " |")
    lines.append("|" + "|".join("---" for _ in shown) + "|")
    for row in rows:
        cells = []
        for c in shown:
            cells.append(_fmt(row[c]).replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, write the summary of its sweep directory."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            csv_path, md_path = write_summary(sweep_dir)
        except ZooError as e:
            log.warning("no sweep summary: %s", e)
            return
        png = f", {SUMMARY_PNG}" if (sweep_dir / SUMMARY_PNG).is_file() else ""
        print(f"\n{md_path.read_text()}\nsweep summary: {md_path} and {csv_path.name}{png}", flush=True)


def main(argv: list[str] | None = None) -> None:
    """``python -m zoo.sweeps DIR``: rebuild the summary of an existing sweep directory."""
    from zoo import cli

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m zoo.sweeps SWEEP_DIR   (writes sweep_summary.csv and sweep_summary.md there)")
        sys.exit(0 if args and args[0] in ("-h", "--help") else 2)
    try:
        csv_path, md_path = write_summary(Path(args[0]))
    except ZooError as e:
        cli.fail(str(e))
    print(md_path.read_text(), end="")
    png = md_path.parent / SUMMARY_PNG
    print(f"\nwrote {md_path} and {csv_path}" + (f" and {png}" if png.is_file() else ""))


if __name__ == "__main__":
    main()
