"""What a checkpoint must carry, beyond Lightning's own state, for a resumed run to equal an uninterrupted one.

Lightning restores weights, optimizer, schedulers, epoch and step, and every callback's ``state_dict``
(EMA included). It does not restore the random number generators: dropout masks and random augmentation
after a resume would differ from the run that was cut off. :class:`ResumeState` saves the torch, CUDA,
numpy and Python generators as plain tensors and numbers (a weights-only load reads them), and the
run directory and last validation numbers (used by ``eval.py ensemble=weighted``).
:class:`SafeCheckpointIO` makes Lightning read every checkpoint through ``zoo.weights.load_file``, and
:func:`check_callback_states` refuses a checkpoint whose callback states are not what those callbacks save (among
them file names a resumed run would delete).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.checkpoint_io import CheckpointIO

from zoo.errors import ZooError
from zoo.weights import atomic_save, load_file, remove_leftovers

# The file names a ModelCheckpoint's state carries: when a resumed run saves a new best (or last) checkpoint, it
# deletes the previous one, the file its restored state names.
_PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


def rng_state() -> dict[str, Any]:
    """Every generator's state, as tensors, lists and numbers only (no numpy objects in the pickle)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, mt, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "state": list(mt), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumeState(pl.Callback):
    """Saves RNG states (restored on resume), the run directory and the latest ``val/*`` numbers."""

    def __init__(self, run_dir: str | None = None) -> None:
        self.run_dir = run_dir
        self.trainer: pl.Trainer | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        metrics = self.trainer.callback_metrics if self.trainer is not None else {}
        val = {k: float(v) for k, v in metrics.items() if k.startswith("val/") and torch.as_tensor(v).numel() == 1}
        return {"rng": rng_state(), "run_dir": self.run_dir, "val": val}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("rng"):
            set_rng_state(state_dict["rng"])


def saved_val_metrics(ckpt: dict[str, Any]) -> dict[str, float]:
    """The ``val/*`` numbers a checkpoint was saved with (ResumeState's, else ModelCheckpoint's best score)."""
    callbacks = ckpt.get("callbacks") or {}
    for key, state in callbacks.items():
        if str(key).startswith("ResumeState") and isinstance(state, dict) and state.get("val"):
            return dict(state["val"])
    for key, state in callbacks.items():
        if str(key).startswith("ModelCheckpoint") and isinstance(state, dict):
            score, monitor = state.get("best_model_score"), state.get("monitor")
            if score is not None and monitor:
                try:  # a file's value: a number, or nothing
                    return {str(monitor): float(score)}
                except (TypeError, ValueError):
                    return {}
    return {}


def _is_number(v: Any) -> bool:
    """A score as Lightning saves it: None, a real number, or a one-element floating/integer tensor."""
    if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)):
        return True
    return isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_complex() and v.dtype != torch.bool


def _is_int(v: Any, low: int = 0, high: int | None = None) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low and (high is None or v <= high)


def _checkpoint_state_problem(state: dict[str, Any]) -> str | None:
    """ModelCheckpoint: every file it names lies plainly in its ``dirpath``; its scores are numbers."""
    dirpath = state.get("dirpath")
    best_k = state.get("best_k_models") or {}
    if not isinstance(best_k, dict):
        return "its best_k_models is not a mapping of file names to scores"
    for path in [*(state.get(k) for k in _PATH_KEYS), *best_k]:
        if path is None or path == "":
            continue
        inside = (isinstance(path, str) and isinstance(dirpath, str) and os.path.normpath(path) == path
                  and path.startswith(os.path.join(dirpath, "")))
        if not inside:
            return (f"it names {str(path)[:200]!r}, which is not a file in its checkpoint folder "
                    f"{str(dirpath)[:200]!r} (a resumed run deletes the files this state names)")
    scores = [state.get(k) for k in ("best_model_score", "kth_value", "current_score")] + list(best_k.values())
    if not all(_is_number(v) for v in scores):
        return "its scores are not numbers"
    return None


def _resume_state_problem(state: dict[str, Any]) -> str | None:
    """ResumeState: the generators in the shapes :func:`rng_state` writes them, and ``val`` numbers."""
    rng = state.get("rng")
    if rng:
        try:
            n, p = rng["numpy"], rng["python"]
            ok = (isinstance(rng["torch"], torch.Tensor) and rng["torch"].dtype == torch.uint8
                  and n["kind"] == "MT19937" and isinstance(n["keys"], torch.Tensor)
                  and tuple(n["keys"].shape) == (624,) and _is_int(n["pos"], 0, 624)
                  and _is_int(n["has_gauss"], 0, 1) and isinstance(n["cached"], float)
                  and _is_int(p["version"]) and isinstance(p["state"], list) and len(p["state"]) == 625
                  and all(_is_int(x, 0, 2**32) for x in p["state"])
                  and (p["gauss"] is None or isinstance(p["gauss"], float))
                  and all(isinstance(t, torch.Tensor) and t.dtype == torch.uint8 for t in rng.get("cuda", [])))
        except (KeyError, TypeError, AttributeError):
            ok = False
        if not ok:
            return "its random-generator states are not the tensors and numbers ResumeState writes"
    val = state.get("val") or {}
    if not (isinstance(val, dict) and all(isinstance(k, str) and _is_number(v) for k, v in val.items())):
        return "its val numbers are not numbers"
    return None


def _curves_problem(state: dict[str, Any]) -> str | None:
    """EpochCurves: ``{metric: {epoch: number}}``."""
    history = state.get("history") or {}
    ok = isinstance(history, dict) and all(
        isinstance(tag, str) and isinstance(points, dict)
        and all(_is_int(e) and _is_number(v) for e, v in points.items()) for tag, points in history.items())
    return None if ok else "its history is not {metric: {epoch: number}}"


def _ema_problem(state: dict[str, Any]) -> str | None:
    """EMA: an update count, its decay, and the raw weights as tensors."""
    raw = state.get("raw") or {}
    ok = (_is_int(state.get("num_updates", 0)) and _is_number(state.get("decay")) and isinstance(raw, dict)
          and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in raw.items()))
    return None if ok else "its num_updates, decay and raw weights are not an integer, a number and tensors"


def _early_stopping_problem(state: dict[str, Any]) -> str | None:
    """Lightning's EarlyStopping: counters and the best score."""
    ok = all(_is_int(state.get(k, 0)) for k in ("wait_count", "stopped_epoch", "patience"))
    return None if ok and _is_number(state.get("best_score")) else "its counters and best score are not numbers"


# What the states of the callbacks zoo's configs name may hold. Each is data from the file that Lightning's
# load_state_dict puts into the callback as it is, so it is checked before anything is built.
_STATE_CHECKS = {
    "ModelCheckpoint": _checkpoint_state_problem,
    "ResumeState": _resume_state_problem,
    "EpochCurves": _curves_problem,
    "EMA": _ema_problem,
    "EarlyStopping": _early_stopping_problem,
}


def check_callback_states(ckpt: dict[str, Any], source: str | Path) -> None:
    """Refuse ``ckpt`` in one line if the state of a callback zoo configures is not what that callback saves.

    The dangerous one: Lightning's ModelCheckpoint restores the paths of its best, k-th best and last checkpoints
    and a resumed run deletes them when it writes newer ones. Its own guard (the path lies under the checkpoint
    folder) compares unresolved paths, so ``RUN/checkpoints/../../notes.txt`` passes it; here every such path
    must be spelled plainly and lie under the state's ``dirpath``. The others would end in a traceback mid-run.
    """
    callbacks = ckpt.get("callbacks") or {}
    if not isinstance(callbacks, dict):
        raise ZooError(f"refusing {source}: its callback states are not a mapping")
    for key, state in callbacks.items():
        name = str(key).split("{")[0]
        check = _STATE_CHECKS.get(name)
        if check is None:
            continue  # a callback this run does not have: Lightning does not restore it
        problem = check(state) if isinstance(state, dict) else "it is not a mapping"
        if problem:
            raise ZooError(f"refusing {source}: its {name} state is not what {name} saves: {problem}")


class SafeCheckpointIO(CheckpointIO):
    """Lightning's checkpoint I/O through zoo: loads with :func:`load_file`, saves with :func:`atomic_save`.

    ``trainer.fit(ckpt_path=...)`` would otherwise call ``torch.load`` itself; with this plugin every
    resume is a weights-only load with our one-line errors.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        atomic_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        """Lightning's resume read: weights-only, callback states checked, and the temp files of killed saves in
        that run are cleared."""
        ckpt = load_file(path)
        check_callback_states(ckpt, path)
        remove_leftovers(Path(path).parent)
        return ckpt

    def remove_checkpoint(self, path: Any) -> None:
        Path(path).unlink(missing_ok=True)
