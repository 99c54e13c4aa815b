"""Loading weights safely: every file goes through :func:`load_file`, which never runs code.

A checkpoint's metadata is read as data by zoo.checkpoint (the record); this module reads the file itself.
Before unpickling, a zip archive's central directory is read: members that would expand past
``ZOO_MAX_CHECKPOINT_BYTES`` (default 16 GiB) or far past the file's own size (torch stores, never
compresses, so a real checkpoint expands to about its size) are refused before anything is decompressed.

Checkpoints come from strangers. ``torch.load(..., weights_only=True)`` refuses any pickle that would
import or call something outside plain containers and tensors, so a malicious file fails to load
instead of running its payload. Lightning's own resume path is routed here too
(``zoo.training.callbacks.resume_state.SafeCheckpointIO``; this module stays free of Lightning, like the models
that import it),
and ``last.ckpt`` is written atomically (temp file, fsync, rename), so a kill while saving leaves the
previous checkpoint readable.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import ZooError, causes
from zoo.registry import create_model, entry, list_models, options_for_weights

StateDict = dict[str, torch.Tensor]


def _first_line(e: BaseException) -> str:
    """The first sentence of an exception's message: enough to say what was wrong, on one line."""
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line.split(". ")[0][:160]


def _blocked_global(e: BaseException) -> str | None:
    """The ``module.name`` a weights-only unpickler refused, if that is why ``e`` was raised."""
    for line in str(e).splitlines():
        if "unsupported global" in line.lower() or "unsupported class" in line.lower():
            words = [w for w in line.replace(",", " ").split() if "." in w and not w.endswith(".")]
            return words[0] if words else line.strip()
    return None


def _unsafe_pickle_global(path: Path) -> str | None:
    """The first importable name a plain (non-zip) pickle refers to outside torch: read, never executed.

    torch's weights-only unpickler stops at the first opcode it does not know (a protocol-4 ``FRAME``)
    before it sees the ``os.system`` behind it; scanning the opcodes names the payload for the message.
    """
    import pickletools

    if zipfile.is_zipfile(path):
        return None
    strings: list[str] = []
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                    strings.append(str(arg))
                name = str(arg).replace(" ", ".") if op.name == "GLOBAL" else None
                if op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    name = f"{strings[-2]}.{strings[-1]}"
                if name and not name.startswith(("torch.", "collections.OrderedDict", "_codecs.encode")):
                    return name
    except Exception:  # not a pickle at all, or a truncated one
        return None
    return None


DEFAULT_MAX_UNPACKED = 16 * 2**30  # bytes a checkpoint's archive members may expand to in all


def max_unpacked_bytes() -> int:
    """The cap on a checkpoint's unpacked size: ``ZOO_MAX_CHECKPOINT_BYTES``, else 16 GiB."""
    value = os.environ.get("ZOO_MAX_CHECKPOINT_BYTES")
    if not value:
        return DEFAULT_MAX_UNPACKED
    try:
        cap = int(float(value))
    except ValueError:
        raise ZooError(f"ZOO_MAX_CHECKPOINT_BYTES={value!r}: expected a number of bytes") from None
    if cap <= 0:
        raise ZooError(f"ZOO_MAX_CHECKPOINT_BYTES={value!r}: expected a positive number of bytes")
    return cap


def check_archive_size(path: Path) -> None:
    """Refuse a zip whose members would expand past the cap, or to more than twice the file: a zip bomb."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as z:
            total = sum(info.file_size for info in z.infolist())  # the central directory: nothing unpacked
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # unreadable as a zip: torch.load says so in one line
    size = path.stat().st_size
    cap = max_unpacked_bytes()
    if total > cap or total > 2 * size + 2**20:
        raise ZooError(f"refusing {path}: its archive would expand to {total:,} bytes from a {size:,}-byte file "
                       f"(a checkpoint expands to about its own size; cap ZOO_MAX_CHECKPOINT_BYTES={cap:,})")


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a ``.ckpt``/``.pth``/``.pt``/``.safetensors`` file safely; user mistakes raise :class:`ZooError`."""
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
            raise ZooError(f"not a readable safetensors file: {p} ({_first_line(e)})") from e
    check_archive_size(p)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        blocked = _blocked_global(e) or _unsafe_pickle_global(p)
        if blocked:
            raise ZooError(
                f"refusing to load {p}: it asks to run code ({blocked}) when unpickled; only plain weights are read"
            ) from e
        raise ZooError(f"not a readable checkpoint (corrupt or not a PyTorch file): {p}") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, UnicodeDecodeError) as e:
        raise ZooError(f"not a readable checkpoint (truncated or corrupt): {p} ({_first_line(e)})") from e
    except Exception as e:  # random bytes reach the legacy unpickler's internals (IndexError, KeyError, ...)
        raise ZooError(f"not a readable checkpoint (corrupt or not a PyTorch file): {p}") from e
    if not isinstance(obj, dict):
        raise ZooError(f"not a checkpoint or state dict: {p} holds a {type(obj).__name__}")
    return obj


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a Lightning checkpoint written by ``train.py`` (it must carry its hyper-parameters)."""
    ckpt = load_file(path)
    if "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise ZooError(f"{path} is not a zoo training checkpoint (no state_dict/hyper_parameters in it)")
    return ckpt


def remove_leftovers(directory: str | Path, name: str = "*.ckpt") -> list[Path]:
    """Delete the temp files (``.NAME.*.tmp``) of saves that were killed midway; return what was removed.

    A kill between :func:`atomic_save`'s ``mkstemp`` and its rename leaves one (ten kills of a ResNet run
    left 485 MB); the next save of that file, and a resume of that run, clear them.
    """
    removed = []
    for tmp in Path(directory).glob(f".{name}.*.tmp"):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _disk_full(exc: BaseException) -> OSError | None:
    """The out-of-space OSError behind ``exc`` (torch.save wraps its writer's OSError in a RuntimeError)."""
    return next((e for e in causes(exc) if isinstance(e, OSError) and e.errno in DISK_FULL), None)


def _free_space(folder: Path) -> str:
    """``shutil.disk_usage``'s free bytes, readable (what the one-line error of a full disk reports)."""
    try:
        free = float(shutil.disk_usage(folder).free)
    except OSError:
        return "unknown space"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if free < 1024 or unit == "TB":
            return f"{free:.0f} {unit}" if unit == "B" else f"{free:.1f} {unit}"
        free /= 1024
    return f"{free:.1f} TB"


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temp file in the same directory, fsync, then rename over ``path``.

    A rename within one file system is atomic: readers (and a resumed run) see the old file or the new
    one, never half of one, even when the process is killed mid-write.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(p.parent, p.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is as readable as any other file
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)  # the earlier file at ``path`` is untouched
        full = _disk_full(e)
        if full is None:
            raise
        raise ZooError(f"cannot save {p}: {full.strerror or os.strerror(full.errno)} "
                       f"({_free_space(p.parent)} free on {p.parent}); earlier checkpoints are intact, "
                       "free some space (or raise the file size limit) and resume from last.ckpt") from None
    try:  # make the rename itself durable
        dir_fd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


# -- which model does a state dict belong to ---------------------------------------------------------------


def _meta_state_shapes(name: str, **kwargs: Any) -> dict[str, tuple[int, ...]] | None:
    """Key -> shape of a registered model built on the meta device (no memory, no init cost)."""
    try:
        with torch.device("meta"):
            model = create_model(name, **kwargs)
    except Exception:
        return None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def guess_model(weights: StateDict, candidates: list[str] | None = None,
                prefer: str | None = None) -> tuple[str, float] | None:
    """The registered model whose key names best match ``weights`` and the fraction that matched.

    Names are compared, then shapes break ties, so a ResNet-18 file is told from a ResNet-34 one;
    ``prefer`` wins exact ties (an LSTM file is not "an RNN file" because the keys are the same).
    """
    keys = {k for k in weights if not k.endswith("num_batches_tracked")}

    def rank(names: list[str]) -> list[tuple[float, float, str]]:
        scored = []
        for name in names:
            e = entry(name)
            shapes = _meta_state_shapes(name, in_channels=e.input_size[0 if e.kind == "image" else -1])
            if shapes is None:
                continue
            theirs = {k for k in shapes if not k.endswith("num_batches_tracked")}
            common = keys & theirs
            name_score = len(common) / max(len(keys | theirs), 1)
            shape_score = sum(tuple(weights[k].shape) == shapes[k] for k in common) / max(len(common), 1)
            scored.append((name_score, shape_score, name == prefer, name))
        return [(a, b, n) for a, b, _, n in sorted(scored, reverse=True)]

    if candidates is None:  # one model a family first, then every member of the two closest families
        families: dict[str, list[str]] = {}
        for name in list_models():
            families.setdefault(entry(name).family, []).append(name)
        firsts = rank([members[0] for members in families.values()])
        close = {entry(n).family for _, _, n in firsts[:2]} | ({entry(prefer).family} if prefer else set())
        candidates = [n for f in close for n in families.get(f, [])]
    ranked = rank(candidates)
    return (ranked[0][2], ranked[0][0]) if ranked and ranked[0][0] > 0 else None


def convert_state_dict(name: str, weights: StateDict) -> StateDict:
    """A bare state dict with the current key names of ``name``: its registry entry's
    ``state_dict_converter`` (old published names, missing BN counters), if it declares one."""
    converter = entry(name).state_dict_converter
    return converter(weights) if converter is not None else weights


def _summarise(keys: list[str], n: int = 6) -> str:
    shown = ", ".join(keys[:n])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > n else shown


def mismatch_message(model_name: str, model: nn.Module, weights: StateDict) -> str | None:
    """One line naming missing keys, unexpected keys, shape clashes, and the model the file looks like."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [f"{k} {tuple(weights[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in weights and tuple(weights[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    if missing:
        parts.append(f"missing keys: {_summarise(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {_summarise(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches (file vs model): {_summarise(shapes, 3)}")
    guess = guess_model(weights, prefer=model_name)
    hint = ""
    if guess and guess[0] != model_name:
        hint = f"; the file looks like a {guess[0]!r} state dict ({guess[1]:.0%} of key names match)"
    return f"weights do not fit {model_name!r}: " + "; ".join(parts) + hint


def _infer_sizes(name: str, weights: StateDict, kwargs: dict[str, Any]) -> dict[str, int]:
    """``num_classes`` and ``in_channels`` of a bare state dict, where the caller did not give them.

    Candidates are the dimensions of the first and the last weight matrix; the pair whose meta-device
    build has exactly the file's shapes wins.
    """
    if "in_channels" in kwargs and "num_classes" in kwargs:
        return {}
    rest = {k: v for k, v in kwargs.items() if k not in ("in_channels", "num_classes")}
    default = _meta_state_shapes(name, **rest) or {}
    mats = [weights[k] for k in default if k in weights and weights[k].ndim >= 2]  # in the model's order
    if not mats:
        return {}
    ins = [kwargs["in_channels"]] if "in_channels" in kwargs else list(dict.fromkeys(mats[0].shape))
    outs = [kwargs["num_classes"]] if "num_classes" in kwargs else list(dict.fromkeys(mats[-1].shape))
    for c in ins:
        for n in outs:
            shapes = _meta_state_shapes(name, in_channels=int(c), num_classes=int(n), **rest)
            if shapes and all(k in weights and tuple(weights[k].shape) == s for k, s in shapes.items()):
                return {"in_channels": int(c), "num_classes": int(n)}
    return {}


def state_dict_of(obj: dict[str, Any]) -> StateDict:
    """The tensor mapping inside a file: a bare state dict, ``{"state_dict": ...}`` or ``{"model": ...}``."""
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    weights = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not weights:
        raise ZooError("the file holds no tensors: not a state dict")
    if any(k.startswith("net.") for k in weights):  # a zoo task's state dict: the network's part
        weights = {k[len("net.") :]: v for k, v in weights.items() if k.startswith("net.")}
    if all(k.startswith("module.") for k in weights):  # saved from DataParallel/DDP
        weights = {k[len("module.") :]: v for k, v in weights.items()}
    return weights


def _safetensors_record(path: str | Path) -> Any:
    """The record ``zoo.export`` stores in a ``.safetensors`` file's metadata (None if there is none)."""
    import json

    from safetensors import safe_open

    from zoo.checkpoint import Record

    source = str(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "zoo_record" in meta:
            return Record.from_dict(json.loads(meta["zoo_record"]), source)
        if "zoo_model" not in meta:  # written by someone else: a bare state dict
            return None
        size = int(meta["image_size"]) if meta.get("image_size") else None  # written by an older zoo.export
        return Record.from_hparams({"model": json.loads(meta["zoo_model"]), "num_classes": int(meta["num_classes"]),
                                    "in_channels": int(meta["in_channels"]),
                                    "data": {"facts": {"input_shape": [size] if size else []}}}, source)
    except ZooError:
        raise
    except Exception as e:  # malformed JSON or numbers in the header
        raise ZooError(f"{source}: malformed zoo metadata ({type(e).__name__}: {str(e)[:120]})") from None


def load_pretrained(
    path_or_state_dict: str | Path | dict[str, Any], name: str | None = None, strict: bool = True, **kwargs: Any
) -> nn.Module:
    """Return a network, in eval mode, with the weights of a ``.ckpt``, ``.pth`` or ``.safetensors`` file.

    A training checkpoint (or a zoo export) rebuilds its own architecture from its record
    (zoo.checkpoint): names looked up in the registry, values checked, the weights checked to fit before
    the network is built. A bare state dict needs ``name`` (and the ``num_classes``/``in_channels`` it was
    trained with, inferred from the weights when omitted). With ``strict=True`` a mismatch raises one
    line listing missing and unexpected keys and naming the registered model the file looks like.
    """
    from zoo.checkpoint import read_record

    is_dict = isinstance(path_or_state_dict, dict)
    source = "the state dict" if is_dict else str(path_or_state_dict)
    sd = path_or_state_dict if is_dict else load_file(path_or_state_dict)
    record = None
    if not is_dict and not name and Path(path_or_state_dict).suffix == ".safetensors":
        record = _safetensors_record(path_or_state_dict)
        weights = sd
    elif "state_dict" in sd and "hyper_parameters" in sd:  # a zoo Lightning checkpoint
        record = read_record(sd, source)
        weights = state_dict_of(sd)
    if record is not None:
        overrides = {**kwargs, **({"name": name} if name else {})}
        return record.build_network(weights, strict, **overrides).eval()
    weights = state_dict_of(sd)
    if name is None:
        guess = guess_model(weights)
        hint = f" (it looks like {guess[0]!r})" if guess else ""
        raise ZooError(f"a bare state dict does not say its architecture: pass name=, e.g. name='resnet18'{hint}")
    weights = convert_state_dict(name, weights)
    fitted = options_for_weights({"name": name, **kwargs}, weights)  # what older weights need (DenseNet's stem)
    kwargs = {k: v for k, v in fitted.items() if k != "name"}
    model = create_model(name, **{**_infer_sizes(name, weights, kwargs), **kwargs})
    if strict:
        problem = mismatch_message(name, model, weights)
        if problem:
            raise ZooError(problem)
        model.load_state_dict(weights, strict=True)
    else:
        own = model.state_dict()
        fitting = {k: v for k, v in weights.items() if k in own and v.shape == own[k].shape}
        model.load_state_dict(fitting, strict=False)
    return model.eval()
