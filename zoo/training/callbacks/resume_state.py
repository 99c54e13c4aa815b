"""What a checkpoint must carry, beyond Lightning's own state, for a resumed run to equal an uninterrupted one.

Lightning restores weights, optimizer, schedulers, epoch and step, and every callback's ``state_dict``
(EMA included). It does not restore the random number generators: dropout masks and random augmentation
after a resume would differ from the run that was cut off. :class:`ResumeState` saves the torch, CUDA,
numpy and Python generators as plain tensors and numbers (a weights-only load reads them), and the
run directory and last validation numbers (used by ``eval.py ensemble=weighted``).
:class:`SafeCheckpointIO` makes Lightning read every checkpoint through ``zoo.weights.load_file``, and
:func:`check_callback_paths` refuses a checkpoint whose callback states name files a resumed run would delete.
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


def check_callback_paths(ckpt: dict[str, Any], source: str | Path) -> None:
    """Refuse ``ckpt`` if a callback state names a file outside that state's own ``dirpath``.

    Lightning's ModelCheckpoint restores the paths of its best, k-th best and last checkpoints from the file, and
    a resumed run deletes them when it writes newer ones. Its own guard (the path lies under the checkpoint
    folder) compares unresolved paths, so ``RUN/checkpoints/../../notes.txt`` passes it. Here every such path must
    be spelled plainly (no ``..``, nothing to normalise away) and lie under the state's ``dirpath``.
    """
    for key, state in (ckpt.get("callbacks") or {}).items():
        if not isinstance(state, dict) or not any(k in state for k in (*_PATH_KEYS, "best_k_models")):
            continue
        name = str(key).split("{")[0]
        dirpath = state.get("dirpath")
        best_k = state.get("best_k_models") or {}
        if not isinstance(best_k, dict):
            raise ZooError(f"refusing {source}: its {name} state's best_k_models is not a mapping of file names")
        for path in [*(state.get(k) for k in _PATH_KEYS), *best_k]:
            if path is None or path == "":
                continue
            inside = (isinstance(path, str) and isinstance(dirpath, str) and os.path.normpath(path) == path
                      and path.startswith(os.path.join(dirpath, "")))
            if not inside:
                raise ZooError(f"refusing {source}: its {name} state names {str(path)[:200]!r}, which is not a file "
                               f"in its checkpoint folder {str(dirpath)[:200]!r} (a resumed run deletes the files "
                               "this state names)")


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
        check_callback_paths(ckpt, path)
        remove_leftovers(Path(path).parent)
        return ckpt

    def remove_checkpoint(self, path: Any) -> None:
        Path(path).unlink(missing_ok=True)
