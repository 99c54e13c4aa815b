"""Loading weights safely: every file goes through :func:`load_file`, which never runs code.

Checkpoints come from strangers. ``torch.load(..., weights_only=True)`` refuses any pickle that would
import or call something outside plain containers and tensors, so a malicious file fails to load
instead of running its payload.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import ZooError


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a ``.ckpt``/``.pth``/``.pt`` file with ``weights_only=True``; user mistakes raise :class:`ZooError`."""
    p = Path(path)
    if not p.exists():
        raise ZooError(f"checkpoint not found: {p}")
    if p.is_dir():
        raise ZooError(f"checkpoint path is a directory, not a file: {p}")
    if p.stat().st_size == 0:
        raise ZooError(f"checkpoint file is empty: {p}")
    if p.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file as load_safetensors
        except ImportError as e:
            raise ZooError("reading .safetensors needs the export extra: pip install 'zoo[export]'") from e
        try:
            return load_safetensors(str(p))
        except Exception as e:
            raise ZooError(f"not a readable safetensors file: {p} ({e})") from e
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ZooError(f"refusing to load {p}: it is not a plain weights file ({first})") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ZooError(f"not a readable checkpoint: {p} ({first})") from e
    if not isinstance(obj, dict):
        raise ZooError(f"not a checkpoint or state dict: {p} holds a {type(obj).__name__}")
    return obj


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a Lightning checkpoint written by ``train.py`` (it must carry its hyper-parameters)."""
    ckpt = load_file(path)
    if "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise ZooError(f"{path} is not a zoo training checkpoint (no state_dict/hyper_parameters in it)")
    return ckpt


def load_pretrained(
    path_or_state_dict: str | Path | dict[str, Any], name: str | None = None, strict: bool = True, **kwargs: Any
) -> nn.Module:
    """Return a network, in eval mode, with the weights of a ``.ckpt``, ``.pth`` or ``.safetensors`` file.

    A training checkpoint rebuilds its own architecture; a bare state dict needs ``name`` (and the
    ``num_classes``/``in_channels`` it was trained with, inferred from the weights when omitted).
    """
    from zoo.registry import build_network, create_model

    sd = path_or_state_dict if isinstance(path_or_state_dict, dict) else load_file(path_or_state_dict)
    if "state_dict" in sd and "hyper_parameters" in sd:  # a zoo Lightning checkpoint
        hp = sd["hyper_parameters"]
        image_size = (hp.get("data") or {}).get("facts", {}).get("input_shape", [None])[-1]
        model_cfg = {**hp["model"], **kwargs, **({"name": name} if name else {})}
        model = build_network(model_cfg, hp["num_classes"], hp["in_channels"], image_size)
        weights = {k[len("net.") :]: v for k, v in sd["state_dict"].items() if k.startswith("net.")}
    else:
        if name is None:
            raise ZooError("a bare state dict does not say its architecture: pass name=, e.g. name='resnet18'")
        weights = sd.get("state_dict", sd) if isinstance(sd.get("state_dict"), dict) else sd
        model = create_model(name, **kwargs)
    result = model.load_state_dict(weights, strict=strict)
    if not strict and (result.missing_keys or result.unexpected_keys):
        pass  # the caller asked for a partial load
    return model.eval()

