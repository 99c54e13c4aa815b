"""The checkpoint record: what a zoo checkpoint says about itself, as names and plain values.

Training writes it as the ``hyper_parameters`` of every checkpoint (``zoo.run.build_task``); eval, predict,
ensembles, export, ``zoo.load_pretrained``, fine-tuning, resume and torch.hub read it with
:func:`read_record`. A checkpoint may come from a stranger, so nothing in it chooses code to run: the model
is looked up in the registry, the data set, loss, optimizer and scheduler by their config-group names in
``configs/`` (whose ``_target_`` is the one that runs), and every stored option is a plain value, checked
before anything is built. Checkpoints written before the record (``_target_`` strings in their
``hyper_parameters``) still load: a target is accepted only where the package's own configs name it, in
the group it is found in; anything else is ``refusing FILE: it names code to run (TARGET)``.
"""

from __future__ import annotations

import copy
import inspect
import math
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from zoo.errors import ZooError
from zoo.registry import RESERVED_MODEL_KEYS, build_network, entry, options_for_weights

RECORD_VERSION = 1
GROUPS = ("data", "loss", "optimizer", "scheduler")  # the config groups a record names
# Hydra's instructions: in a file they would choose a callable or how it is called
HYDRA_KEYS = ("_target_", "_args_", "_partial_", "_convert_", "_recursive_")
# Modules that moved since older checkpoints were written: their old target -> the current one (the first
# matching prefix wins, so a class that moved on its own comes before its module's prefix)
LEGACY_PREFIXES = {
    "datamodules.vision.ImageFolder": "zoo.datamodules.folder.ImageFolder",  # image folders got their own module
    "zoo.datamodules.vision.ImageFolder": "zoo.datamodules.folder.ImageFolder",
    "zoo.losses.": "zoo.training.losses.",  # losses moved into zoo.training
    "datamodules.": "zoo.datamodules.",  # the data code installs as zoo.datamodules (one top-level name)
}
# Sanity ranges for values read from a file: beyond these a build would ask for absurd memory
MAX_CLASSES = 1_000_000
MAX_CHANNELS = 1_000_000
MAX_INPUT = 10**8  # elements of one input sample (product of input_shape)
MAX_ITEMS = 10**7  # entries of one list (or tensor) in a record
_NAME = re.compile(r"^[A-Za-z0-9_]{1,100}$")


def refuse_code(source: str, target: Any) -> None:
    """The one message for a file that asks for a callable."""
    raise ZooError(f"refusing {source}: it names code to run ({str(target)[:120]})")


def _config_dir() -> Path:
    from zoo.cli import CONFIG_DIR  # the one place that knows where the package's configs are

    return CONFIG_DIR


# -- the package's own configs: the only source of targets -------------------------------------------------


def _read_yaml(path: Path) -> tuple[dict[str, Any], bool]:
    """A config file's mapping and whether it is ``# @package _global_`` (its group's node sits under the group)."""
    text = path.read_text()
    header = [line.strip() for line in text.splitlines() if line.strip().startswith("#") or not line.strip()]
    data = yaml.safe_load(text) or {}
    return (data if isinstance(data, dict) else {}), "# @package _global_" in header[:5]


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else copy.deepcopy(v)
    return out


@cache
def _group_config(group: str, option: str) -> dict[str, Any]:
    path = _config_dir() / group / f"{option}.yaml"
    raw, global_package = _read_yaml(path)
    defaults = raw.pop("defaults", None) or []
    node = raw.get(group) or {} if global_package else raw
    if "_self_" not in defaults:
        defaults = [*defaults, "_self_"]
    out: dict[str, Any] = {}
    for d in defaults:  # the group's own building blocks (``_augment``); ``override /x: y`` entries are not ours
        if d == "_self_":
            out = _merge(out, node)
        elif isinstance(d, str) and (_config_dir() / group / f"{d}.yaml").is_file():
            out = _merge(out, _group_config(group, d))
    return out


def group_config(group: str, option: str) -> dict[str, Any]:
    """``configs/<group>/<option>.yaml`` composed with its in-group defaults (interpolations left as text)."""
    return copy.deepcopy(_group_config(group, option))


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (_config_dir() / group).glob("*.yaml") if not p.stem.startswith("_"))


@cache
def config_targets() -> dict[str, dict[str | None, tuple[str, ...]]]:
    """For each recorded group: ``_target_`` (None for target-less options) -> the options that name it."""
    out: dict[str, dict[str | None, tuple[str, ...]]] = {}
    for group in GROUPS:
        by_target: dict[str | None, list[str]] = {}
        for option in group_options(group):
            by_target.setdefault(_group_config(group, option).get("_target_"), []).append(option)
        out[group] = {t: tuple(o) for t, o in by_target.items()}
    return out


@cache
def allowed_targets() -> frozenset[str]:
    """Every ``_target_`` the package's configs name, in any group: what a file's target may be at all."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("_target_"), str):
                found.add(node["_target_"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for path in _config_dir().rglob("*.yaml"):
        walk(_read_yaml(path)[0])
    return frozenset(found)


def _modern(target: str) -> str:
    for old, new in LEGACY_PREFIXES.items():
        if target.startswith(old):
            return new + target[len(old) :]
    return target


def _accepted_keys(target: str | None) -> set[str] | None:
    """Keyword arguments a (trusted, config-named) target accepts along its ``**kwargs`` chain; None: any."""
    if target is None:
        return set()
    from hydra.utils import get_class

    keys: set[str] = set()
    for cls in get_class(target).__mro__:
        if "__init__" not in vars(cls):
            continue
        params = inspect.signature(vars(cls)["__init__"]).parameters.values()
        keys |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return keys - {"self"}
    return None


# -- plain values ------------------------------------------------------------------------------------------


def plain(value: Any, where: str, source: str, tensors: bool = False, depth: int = 0) -> Any:
    """``value`` if it is plain data (numbers, strings, lists, string-keyed dicts; tensors where allowed).

    A ``_target_`` (or any Hydra instruction) is refused as code; an ``${...}`` interpolation too, since
    resolving it would run a resolver.
    """
    if depth > 12:
        raise ZooError(f"{source}: {where} is nested too deeply")
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        if "${" in value:
            raise ZooError(f"refusing {source}: {where} holds an interpolation ({value[:80]})")
        if len(value) > 100_000:
            raise ZooError(f"{source}: {where} is a string of {len(value):,} characters")
        return value
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_ITEMS:
            raise ZooError(f"{source}: {where} has {len(value):,} entries")
        return [plain(v, f"{where}[{i}]", source, tensors, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        for key in HYDRA_KEYS:
            if key in value:
                refuse_code(source, value[key] if key == "_target_" else f"{key} in {where}")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ZooError(f"{source}: {where} has a key that is not a string ({type(k).__name__})")
            out[k] = plain(v, f"{where}.{k}", source, tensors, depth + 1)
        return out
    if tensors and isinstance(value, torch.Tensor):
        if value.numel() > MAX_ITEMS or value.is_complex() or value.dtype == torch.bool:
            raise ZooError(f"{source}: {where} is a tensor of {value.numel():,} {value.dtype} values")
        return value
    raise ZooError(f"{source}: {where} must be plain data, not a {type(value).__name__}")


def _int(value: Any, where: str, source: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ZooError(f"{source}: {where} must be an integer in [{low}, {high:,}]; got {str(value)[:40]}")
    return value


def _floats(value: Any, where: str, source: str, positive: bool = False) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or len(value) > 4096:
        raise ZooError(f"{source}: {where} must be a short list of numbers; got {type(value).__name__}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (positive and v <= 0):
            raise ZooError(f"{source}: {where} must hold finite{' positive' if positive else ''} numbers; got {v!r}")
        out.append(float(v))
    return tuple(out)


# -- the record --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What the data was: its name and task kind, classes, input shape, normalisation, class names, whitening."""

    name: str = ""
    task: str = "classification"
    num_classes: int | None = None
    input_shape: tuple[int, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    class_names: tuple[str, ...] = ()
    whitening: Any = None  # a datamodule's fitted whitening (tensors/lists), if it has one
    extra: dict[str, Any] = field(default_factory=dict)  # other plain facts (baseline_mse, length, mode, ...)

    _KNOWN = ("name", "task", "num_classes", "input_shape", "mean", "std", "class_names", "whitening")

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "task": self.task, "num_classes": self.num_classes,
               "input_shape": list(self.input_shape), "mean": list(self.mean), "std": list(self.std),
               "class_names": list(self.class_names), **self.extra}
        if self.whitening is not None:
            out["whitening"] = self.whitening
        return out

    @classmethod
    def from_dict(cls, d: Any, source: str) -> Facts:
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise ZooError(f"{source}: the data facts must be a mapping, not a {type(d).__name__}")
        d = plain(d, "facts", source, tensors=True)
        shape = d.get("input_shape") or []
        if not isinstance(shape, list) or len(shape) > 4:
            raise ZooError(f"{source}: facts.input_shape must be a list of at most 4 sizes; got {str(shape)[:60]}")
        shape = tuple(_int(s, "facts.input_shape", source, 1, MAX_INPUT) for s in shape)
        if math.prod(shape) > MAX_INPUT:
            raise ZooError(f"{source}: facts.input_shape {list(shape)} is {math.prod(shape):,} values a sample")
        names = d.get("class_names") or []
        if not isinstance(names, list) or not all(isinstance(n, str) and len(n) <= 1000 for n in names):
            raise ZooError(f"{source}: facts.class_names must be a list of strings")
        task, name = d.get("task", "classification"), d.get("name", "")
        for where, v in (("task", task), ("name", name)):
            if not isinstance(v, str) or (v and not _NAME.match(v)):
                raise ZooError(f"{source}: facts.{where} must be a short name; got {str(v)[:60]!r}")
        n = d.get("num_classes")
        whitening = d.get("whitening")
        if whitening is not None and not isinstance(whitening, (torch.Tensor, list, dict)):
            raise ZooError(f"{source}: facts.whitening must be a tensor, a list or a mapping of them")
        extra = {k: v for k, v in d.items() if k not in cls._KNOWN}
        for k, v in extra.items():
            if isinstance(v, (dict, torch.Tensor)) or (isinstance(v, list) and len(v) > 4096):
                raise ZooError(f"{source}: facts.{k} must be a number, a string or a short list")
        return cls(name=name, task=task, num_classes=None if n is None else _int(n, "facts.num_classes", source, 1,
                                                                                   MAX_CLASSES),
                   input_shape=shape, mean=_floats(d.get("mean") or [], "facts.mean", source),
                   std=_floats(d.get("std") or [], "facts.std", source, positive=True), class_names=tuple(names),
                   whitening=whitening, extra=extra)


@dataclass(frozen=True)
class Choice:
    """A config-group option by name (``configs/<group>/<name>.yaml``) and the values set on it."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": copy.deepcopy(self.options)}


@dataclass(frozen=True)
class Record:
    """One checkpoint's metadata: the model by registered name, the data and training recipe by config names.

    ``model``/``model_kwargs`` rebuild the network with ``num_classes``/``in_channels``; ``facts`` say how
    to feed it; ``data``, ``loss``, ``optimizer`` and ``scheduler`` rebuild the rest (None where a file,
    such as an exported ``.safetensors``, carries only the network).
    """

    model: str
    num_classes: int
    in_channels: int
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    facts: Facts = field(default_factory=Facts)
    data: Choice | None = None
    loss: Choice | None = None
    optimizer: Choice | None = None
    scheduler: Choice | None = None
    l1: float = 0.0
    version: int = RECORD_VERSION
    source: str = field(default="the checkpoint", compare=False, repr=False)  # named in error messages

    # -- reading and writing

    def to_dict(self) -> dict[str, Any]:
        """The plain mapping a checkpoint stores (``hyper_parameters``): read back by :meth:`from_dict`."""
        return {"record_version": self.version, "model": self.model, "model_kwargs": copy.deepcopy(self.model_kwargs),
                "num_classes": self.num_classes, "in_channels": self.in_channels, "facts": self.facts.to_dict(),
                **{g: (c.to_dict() if c is not None else None) for g, c in self._choices()}, "l1": self.l1}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str) -> Record:
        """A record from its stored mapping; every value is checked, nothing is built."""
        version = d.get("record_version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ZooError(f"{source}: record_version must be a positive integer; got {str(version)[:40]}")
        if version > RECORD_VERSION:
            raise ZooError(f"{source}: its record (version {version}) is newer than this zoo reads ({RECORD_VERSION})")
        known = {"record_version", "model", "model_kwargs", "num_classes", "in_channels", "facts", "l1", *GROUPS}
        plain({k: v for k, v in d.items() if k not in ("facts",)}, "hyper_parameters", source)  # targets anywhere
        unknown = sorted(set(d) - known)
        if unknown:
            raise ZooError(f"{source}: unknown keys in its record: {', '.join(map(str, unknown))[:200]}")
        choices = {}
        for group in GROUPS:
            c = d.get(group)
            if c is None:
                choices[group] = None
                continue
            if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not isinstance(c.get("options", {}),
                                                                                                 dict):
                raise ZooError(f"{source}: {group} must be {{name: ..., options: {{...}}}}")
            choices[group] = Choice(c["name"], plain(c.get("options") or {}, f"{group}.options", source))
        if "model" not in d:
            raise ZooError(f"{source}: its record has no model")
        return cls(model=d["model"], num_classes=d.get("num_classes"), in_channels=d.get("in_channels"),
                   model_kwargs=plain(d.get("model_kwargs") or {}, "model_kwargs", source),
                   facts=Facts.from_dict(d.get("facts"), source), l1=d.get("l1", 0.0), version=version,
                   source=source, **choices)._validated()

    @classmethod
    def from_hparams(cls, hp: dict[str, Any], source: str, trusted: bool = False) -> Record:
        """A record from a task's constructor arguments: training's configs, or an older checkpoint's layout.

        ``hp`` = ``{model: {name, ...}, num_classes, in_channels, optimizer, scheduler, loss, data: {config,
        facts}, l1}``; each ``_target_`` becomes the name of the config that names it (``trusted``: it came
        from the command line, so the message says which configs exist instead of refusing a file).
        """
        model = hp.get("model")
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            if isinstance(model, dict):
                plain(model, "model", source)
            raise ZooError(f"{source}: model must be a mapping with a name")
        model = plain(model, "model", source)
        data = hp.get("data") or {}
        if not isinstance(data, dict):
            raise ZooError(f"{source}: data must be a mapping of config and facts")
        facts = Facts.from_dict(data.get("facts"), source)
        choices = {g: _choice(g, data.get("config") if g == "data" else hp.get(g), source, trusted, facts.name)
                   for g in GROUPS}
        return cls(model=model["name"], num_classes=hp.get("num_classes"), in_channels=hp.get("in_channels"),
                   model_kwargs={k: v for k, v in model.items() if k not in RESERVED_MODEL_KEYS}, facts=facts,
                   l1=hp.get("l1", 0.0) or 0.0, source=source, **choices)._validated()

    def _choices(self) -> list[tuple[str, Choice | None]]:
        return [("data", self.data), ("loss", self.loss), ("optimizer", self.optimizer), ("scheduler", self.scheduler)]

    def _validated(self) -> Record:
        """Types and ranges, the model's name and the config names, before anything is built."""
        src = self.source
        if not isinstance(self.model, str) or not _NAME.match(self.model):
            raise ZooError(f"{src}: the model must be a registered name; got {str(self.model)[:60]!r}")
        try:
            entry(self.model)
        except ZooError as e:
            raise ZooError(f"{src}: {e}") from None
        _int(self.num_classes, "num_classes", src, 1, MAX_CLASSES)
        _int(self.in_channels, "in_channels", src, 1, MAX_CHANNELS)
        bad = sorted(k for k in self.model_kwargs if not _NAME.match(k) or k in RESERVED_MODEL_KEYS)
        if bad:
            raise ZooError(f"{src}: model arguments that are not names: {', '.join(bad)[:120]}")
        if isinstance(self.l1, bool) or not isinstance(self.l1, (int, float)) or not 0 <= self.l1 < math.inf:
            raise ZooError(f"{src}: l1 must be a non-negative number; got {str(self.l1)[:40]}")
        for group, choice in self._choices():
            if choice is None:
                continue
            if not _NAME.match(choice.name) or choice.name not in group_options(group):
                raise ZooError(f"{src}: {group} {choice.name[:60]!r} is not a config of configs/{group}/; "
                               f"valid: {', '.join(group_options(group))}")
            compose(group, choice.name, choice.options, src)  # options the config's target takes
        return self

    # -- rebuilding

    @property
    def task(self) -> str:
        return self.facts.task

    @property
    def image_size(self) -> int | None:
        return self.facts.input_shape[-1] if self.facts.input_shape else None

    def model_config(self, weights: dict[str, torch.Tensor] | None = None, /, **overrides: Any) -> dict[str, Any]:
        """``name`` and kwargs of the network; with ``weights``, plus the options they need and the record (written
        before the option existed) does not name: a DenseNet of zoo's CIFAR stem before 2026-12-01 gets
        ``stem_norm=True`` (the registry entry's ``options_from_weights``, :func:`zoo.registry.options_for_weights`)."""
        cfg = {"name": self.model, **self.model_kwargs, **overrides}
        return cfg if weights is None else options_for_weights(cfg, weights, self.image_size)

    def check_weights(self, weights: dict[str, torch.Tensor], **overrides: Any) -> nn.Module:
        """The network on the meta device (no memory), checked to fit ``weights``: one line if it does not."""
        from zoo.weights import mismatch_message

        cfg = {"name": overrides.get("name", self.model)}
        try:
            cfg = self.model_config(weights, **overrides)
            with torch.device("meta"):
                meta = build_network(cfg, self.num_classes, self.in_channels, self.image_size)
        except ZooError as e:
            raise ZooError(f"{self.source}: {e}") from None
        except (TypeError, ValueError, RuntimeError) as e:
            raise ZooError(f"{self.source}: model {cfg['name']!r} cannot be built from its record "
                           f"({' '.join(str(e).split())[:160]})") from None
        problem = mismatch_message(cfg["name"], meta, weights)
        if problem:
            raise ZooError(f"{self.source}: {problem}")
        return meta

    def build_network(self, weights: dict[str, torch.Tensor] | None = None, strict: bool = True,
                      **overrides: Any) -> nn.Module:
        """The network, with ``weights`` loaded (checked on the meta device first when ``strict``)."""
        if weights is not None and strict:
            self.check_weights(weights, **overrides)
        net = build_network(self.model_config(weights, **overrides), self.num_classes, self.in_channels,
                            self.image_size)
        if weights is not None:
            if strict:
                net.load_state_dict(weights, strict=True)
            else:
                own = net.state_dict()
                net.load_state_dict({k: v for k, v in weights.items() if k in own and v.shape == own[k].shape},
                                    strict=False)
        return net

    def config(self, group: str) -> dict[str, Any] | None:
        """The group's config as training had it: the package's yaml (its target) with the stored options."""
        choice = dict(self._choices())[group]
        return None if choice is None else compose(group, choice.name, choice.options, self.source)

    def datamodule(self, data_dir: str | None = None) -> Any:
        """The data the checkpoint was trained on, set up (``data_dir``: where its files are now)."""
        cfg = self.config("data")
        if cfg is None:
            raise ZooError(f"{self.source} does not record its data set; it cannot be evaluated on it")
        if data_dir:
            accepted = _accepted_keys(cfg["_target_"])
            if accepted is not None and "data_dir" not in accepted:
                raise ZooError(f"data_dir={data_dir}: data {self.data.name!r} reads no files")
            cfg["data_dir"] = str(data_dir)
        from hydra.utils import get_class

        target = cfg.pop("_target_")
        cfg.pop("_partial_", None)
        dm = get_class(target)(**cfg)  # a trusted class from configs/, plain keyword arguments
        dm.setup()
        return dm

    def task_arguments(self, weights: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
        """Keyword arguments of the task's constructor (zoo.training.tasks), as training passed them (the model's
        options fitted to ``weights``, if given: see :meth:`model_config`)."""
        args = {"model": self.model_config(weights), "num_classes": self.num_classes, "in_channels": self.in_channels,
                "optimizer": self.config("optimizer") or {}, "scheduler": self.config("scheduler"),
                "loss": self.config("loss"), "data": {"config": self.config("data"), "facts": self.facts.to_dict()}}
        if self.l1:
            args["l1"] = float(self.l1)
        return args


def _choice(group: str, cfg: Any, source: str, trusted: bool, prefer: str = "") -> Choice | None:
    """The config-group option an old-layout (``_target_``) config stands for, with its plain options."""
    if cfg is None:
        return None
    if not isinstance(cfg, dict):
        raise ZooError(f"{source}: {group} must be a mapping, not a {type(cfg).__name__}")
    target = cfg.get("_target_")
    if target is not None and not isinstance(target, str):
        refuse_code(source, target)
    candidates = config_targets()[group].get(_modern(target) if target else None)
    if not candidates:
        if trusted:
            named = sorted(str(t) for t in config_targets()[group] if t)
            raise ZooError(f"{group}._target_={target}: a checkpoint records its {group} by config name, and no "
                           f"configs/{group}/*.yaml names this target; named: {', '.join(named)}")
        refuse_code(source, target)
    options = plain({k: v for k, v in cfg.items() if k not in ("_target_", "_partial_")}, group, source)

    def agreement(option: str) -> tuple[bool, int, bool]:  # sgd vs nesterov: the option whose values were kept
        base = _group_config(group, option)
        plain_name = option == str(target).rsplit(".", 1)[-1].lower()  # then torch.optim.SGD is sgd
        return option == prefer, sum(base.get(k) == v for k, v in options.items()), plain_name

    return Choice(max(candidates, key=agreement), options)


def compose(group: str, name: str, options: dict[str, Any], source: str) -> dict[str, Any]:
    """``configs/<group>/<name>.yaml`` with ``options`` set on it; a key its target does not take is one line."""
    from zoo.training.optim import OWN_KEYS

    base = group_config(group, name)
    accepted = _accepted_keys(base.get("_target_"))
    if accepted is not None:
        accepted |= OWN_KEYS.get(group, set())  # keys zoo.training.optim reads itself (interval, warmup_steps, ...)
    for k, v in options.items():
        if k in HYDRA_KEYS:
            refuse_code(source, f"{k} in {group}")
        if k not in base and accepted is not None and k not in accepted:
            raise ZooError(f"{source}: {group} {name!r} takes no option {k!r}")
        base[k] = _merge(base[k], v) if isinstance(base.get(k), dict) and isinstance(v, dict) else copy.deepcopy(v)
    # an interpolation left from the yaml (``seed: ${seed}``) was not stored: the target's default applies
    return {k: v for k, v in base.items() if not (isinstance(v, str) and "${" in v)}


def read_record(ckpt: dict[str, Any], source: str) -> Record:
    """The record of a loaded checkpoint (today's layout, or the one before the record existed)."""
    hp = ckpt.get("hyper_parameters")
    if not isinstance(hp, dict):
        raise ZooError(f"{source} is not a zoo training checkpoint (its hyper_parameters are not a mapping)")
    try:
        if "record_version" in hp:
            return Record.from_dict(hp, source)
        return Record.from_hparams(hp, source)
    except ZooError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # a malformed record: one line, no traceback
        raise ZooError(f"{source}: malformed checkpoint record ({type(e).__name__}: {str(e)[:120]})") from None


def load_record(path: str | Path) -> tuple[dict[str, Any], Record]:
    """Read a checkpoint file safely and its record: what every consumer of a checkpoint starts with."""
    from zoo.weights import load_checkpoint

    ckpt = load_checkpoint(path)
    return ckpt, read_record(ckpt, str(path))
