"""What the thin entry points share: user errors as one line, a check of config-group names, and the
installed console scripts ``zoo-train`` / ``zoo-eval`` (the same code as ``train.py`` / ``eval.py``).

A mistake a user can make ends in ``error: <what was wrong and what is valid>`` on stderr and exit
code 2, with no traceback (``HYDRA_FULL_ERROR=1`` shows it).
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from zoo.errors import ZooError, causes

# zoo/configs: in a checkout a link to the repository's configs/ folder, in the wheel the configs themselves.
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
_GROUP_OVERRIDE = re.compile(r"^[+~]?([A-Za-z_][\w/]*)=(.*)$")


def _as_user_error(exc: BaseException) -> ZooError | None:
    """The ZooError behind ``exc``, also when Hydra's instantiate wrapped it."""
    return next((e for e in causes(exc) if isinstance(e, ZooError)), None)


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a :class:`ZooError` (or one wrapped by Hydra) into one line on stderr and exit 2."""
    try:
        yield
    except Exception as e:
        err = _as_user_error(e)
        if err is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        fail(str(err))


def group_options(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    """The options of a config group (``model`` -> ``["alexnet", ...]``), private ``_*.yaml`` left out."""
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml") if not p.stem.startswith("_"))


def check_overrides(argv: list[str], config_dir: Path = CONFIG_DIR) -> None:
    """Reject ``group=name`` overrides whose config does not exist, naming the valid ones."""
    multirun = bool({"-m", "--multirun"} & set(argv))
    for arg in argv:
        m = _GROUP_OVERRIDE.match(arg)
        if not m or m.group(1).startswith("hydra/") or not (config_dir / m.group(1)).is_dir():
            continue  # hydra/launcher=joblib etc. live in plugins: Hydra names the valid ones itself
        group, value = m.groups()
        if value == "null" and not arg.startswith("~"):  # Hydra: "Config group override must be a string"
            raise ZooError(f"{arg}: name one {group}; "
                           f"valid: {', '.join(group_options(group, config_dir))}")
        if value == "" or any(c in value for c in "()[]{}$"):
            continue  # sweep functions and interpolations are Hydra's to judge
        options = group_options(group, config_dir)
        if "," in value and not multirun:
            raise ZooError(f"{arg} names several {group} options: add -m to run one after the other "
                           f"(python {Path(sys.argv[0]).name} -m {arg})")
        for choice in value.split(","):
            if choice and choice not in options:  # names only: model=../data/mnist is no model
                close = difflib.get_close_matches(choice, options, n=3, cutoff=0.5)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ZooError(f"unknown {group} {choice!r}{hint}; valid: {', '.join(options)}")


def _first_lines(e: BaseException) -> str:
    """Hydra's and OmegaConf's messages on one line, without their ``full_key``/``object_type`` trailer."""
    lines = []
    for line in str(e).strip().splitlines():
        if line.strip().startswith(("full_key:", "object_type", "reference_type")):
            break
        lines.append(line.strip())
    return " ".join(lines)


def _whole(value: Any, name: str, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ZooError(f"{name} must be a whole number {bound}; got {value!r}")


SCHEDULE_COUNTS = ("step_size", "T_max", "total_steps", "total_iters", "warmup_steps", "warmup_epochs", "patience")


def check_config(cfg: Any) -> None:
    """Values a user can get wrong, caught on the composed config before anything is built (no torch needed)."""
    if cfg.get("model") is None or not cfg.model.get("name"):
        raise ZooError(f"a model is needed: model=NAME; valid: {', '.join(group_options('model'))}")
    _whole(cfg.get("seed"), "seed", 0, 2**32 - 1)
    l1 = cfg.get("l1")
    if l1 is not None and (isinstance(l1, bool) or not isinstance(l1, (int, float)) or not 0 <= l1 < float("inf")):
        raise ZooError(f"l1 must be a number >= 0 (the L1 penalty's weight); got {l1!r}")
    if cfg.get("data") is not None and cfg.data.get("batch_size") is not None:
        _whole(cfg.data.batch_size, "data.batch_size", 1)
    trainer = cfg.get("trainer") or {}
    if trainer.get("max_epochs") is not None:
        _whole(trainer.max_epochs, "trainer.max_epochs", 1)
    if trainer.get("accumulate_grad_batches") is not None:
        _whole(trainer.accumulate_grad_batches, "trainer.accumulate_grad_batches", 1)
    scheduler = cfg.get("scheduler") or {}
    for key in SCHEDULE_COUNTS:
        if scheduler.get(key) is not None:
            _whole(scheduler[key], f"scheduler.{key}", 0 if key.startswith("warmup") or key == "patience" else 1)


def _number(value: Any, name: str, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ZooError(f"{name} must be a number >= 0 ({what}); got {value!r}")


def check_eval_config(cfg: Any) -> None:
    """eval.py's values a user can get wrong, caught on the composed config before torch loads."""
    _whole(cfg.get("topk"), "topk", 1)
    _number(cfg.get("temperature"), "temperature", "0 always takes the likeliest character")
    _whole(cfg.get("sample_length"), "sample_length", 0)


# Keys whose values are paths: any file name must work, also one Hydra's override grammar cannot read unquoted.
PATH_KEYS = ("ckpt_path", "predict", "data_dir", "data.data_dir", "visualize.image", "pretrained", "hydra.run.dir",
             "hydra.sweep.dir", "paths.log_dir", "paths.data_dir")
_UNQUOTED_OK = re.compile(r"^[\w\s/\\+.%*@?|-]*$", re.ASCII)


def quote_paths(argv: list[str]) -> list[str]:
    """``predict=/photos/été (2).png`` as ``predict='/photos/été (2).png'``: a path with non-ASCII letters or
    brackets is quoted for Hydra (which reads it unquoted only in ASCII, without brackets); lists, sweeps,
    interpolations and values already quoted are left as they are."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if (eq and key.lstrip("+") in PATH_KEYS and value and value[0] not in "[\"'" and "${" not in value
                and not _UNQUOTED_OK.match(value)):
            quote = "'" if "'" not in value else '"'
            if quote not in value:
                arg = f"{key}={quote}{value}{quote}"
        out.append(arg)
    return out


def check_run_dir(argv: list[str]) -> None:
    """``hydra.run.dir=`` / ``hydra.sweep.dir=`` must be a directory that can be made (not a file, not /proc)."""
    for arg in argv:
        key, _, value = arg.partition("=")
        if key not in ("hydra.run.dir", "hydra.sweep.dir") or not value:
            continue
        path = Path(value).expanduser()
        if path.exists() and not path.is_dir():
            raise ZooError(f"{key}={value} is a file, not a directory")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ZooError(f"{key}={value}: cannot make that directory ({e.strerror})") from e


def compose_check(config_name: str, argv: list[str], config_dir: Path = CONFIG_DIR) -> Any:
    """Compose the config as Hydra is about to, so a bad override is one line before Hydra or torch start.

    Hydra reports composition errors itself over several lines with exit 1. Sweeps (``-m``) are left to
    Hydra: each trial is composed there, and a failed trial is recorded by the sweep.
    """
    if {"-m", "--multirun"} & set(argv):
        return None
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = [a for a in argv if not a.startswith("-")]
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            try:
                return compose(config_name=config_name, overrides=overrides)
            except HydraException as e:
                if "requires --multirun" not in str(e) or not _config_sweeps(config_name, overrides):
                    raise
                return None  # a config that is a sweep itself (hparams_search=...): its trials are Hydra's
    except (HydraException, OmegaConfBaseException) as e:
        raise ZooError(_first_lines(e)) from e


def _config_sweeps(config_name: str, overrides: list[str]) -> bool:
    """Whether the config chosen without the sweep overrides sets ``hydra.mode: MULTIRUN`` (hparams_search=optuna
    does), so ``choice(...)`` on its command line needs no ``-m``."""
    from hydra import compose
    from hydra.core.override_parser.overrides_parser import OverridesParser

    plain = [o.input_line for o in OverridesParser.create().parse_overrides(overrides) if not o.is_sweep_override()]
    cfg = compose(config_name=config_name, overrides=plain, return_hydra_config=True)
    return str(cfg.hydra.get("mode")) in ("MULTIRUN", "RunMode.MULTIRUN")


def _override_key(arg: str) -> str:
    return arg.split("=", 1)[0].lstrip("+~")


def resume_overrides(argv: list[str]) -> list[str]:
    """``ckpt_path=RUN/checkpoints/last.ckpt`` continues in RUN with RUN's own overrides.

    Hydra picks the run directory before our code runs, so it is chosen here: ``hydra.run.dir=RUN``,
    and the overrides the run was started with (``RUN/.hydra/overrides.yaml``) come first, so
    ``python train.py ckpt_path=...`` alone resumes the same model, data and schedule; overrides
    given now still win. A checkpoint outside a run directory, or a sweep (``-m``), is left alone.

    The run directory is a file like any other, so its overrides are data: they are printed before they
    are applied, and one that sets or adds a ``_target_`` (code to run) or a ``hydra`` setting is refused
    unless the command line gives the same override itself.
    """
    given = {_override_key(a): a for a in argv if ("=" in a or a.startswith("~")) and not a.startswith("-")}
    ckpt = given.get("ckpt_path", "=").split("=", 1)[1]
    if not ckpt or ckpt == "null" or "hydra.run.dir" in given or {"-m", "--multirun"} & set(argv):
        return argv
    ckpt_file = Path(ckpt).expanduser()
    run_dir = ckpt_file.resolve().parent.parent
    if ckpt_file.resolve().parent.name != "checkpoints" or not (run_dir / ".hydra").is_dir():
        return argv
    earlier: list[str] = []
    saved = run_dir / ".hydra" / "overrides.yaml"
    if saved.is_file():
        import yaml

        try:
            loaded = yaml.safe_load(saved.read_text()) or []
        except yaml.YAMLError:
            loaded = None
        if not isinstance(loaded, list) or not all(isinstance(a, str) for a in loaded):
            raise ZooError(f"{saved} is not a list of overrides; resume with hydra.run.dir=DIR to ignore it")
        earlier = loaded
    for a in earlier:
        key = _override_key(a)
        if a in argv or key in ("hydra.run.dir", "ckpt_path") or any(key == k or key.startswith(k + ".")
                                                                       for k in given):
            continue  # the command line repeats it, or sets (or removes) that key itself
        if "_target_" in a or key == "hydra" or key.startswith(("hydra.", "hydra/")):
            raise ZooError(f"refusing {saved}: its override {a!r} names code to run or changes Hydra; "
                           "give the same override on the command line to accept it")
    skip = tuple(set(given) | {"ckpt_path", "hydra"})

    def kept(a: str) -> bool:  # ``~callbacks.x`` now also drops an earlier ``+callbacks.x.y=...``
        key = _override_key(a)
        return "=" in a and not any(key == k or key.startswith(k + ".") for k in skip)

    dropped = [a for a in earlier if not kept(a)]
    earlier = [a for a in earlier if kept(a)]

    def only_undoes_additions(a: str) -> bool:  # ``~x`` whose target existed only through an earlier ``+x...``
        key = _override_key(a)
        mine = [d for d in dropped if _override_key(d) == key or _override_key(d).startswith(key + ".")]
        return a.startswith("~") and bool(mine) and all(d.startswith("+") for d in mine)

    if earlier:
        print(f"resuming in {run_dir} with its overrides: {' '.join(earlier)}", flush=True)
    return [*earlier, *[a for a in argv if not only_undoes_additions(a)], f"hydra.run.dir={run_dir}"]


def main(hydra_main: Callable[[], Any], resume: bool = False, config_name: str = "train") -> None:
    """Run a ``@hydra.main`` function after checking the command line: group names, the run directory and the
    composed config's values (train.py), each mistake one line, before Hydra or torch start.

    ``resume=True`` (train.py): a ``ckpt_path=`` inside a run directory continues in that directory, which
    another live run must not hold.
    """
    argv = sys.argv[1:]
    try:
        check_overrides(argv)
        if resume:
            argv = resume_overrides(argv)
            check_overrides(argv)  # the run directory's group choices are checked like the command line's
        check_run_dir(argv)
        run_dir = next((a.split("=", 1)[1] for a in argv if a.startswith("hydra.run.dir=")), None)
        argv = quote_paths(argv)
        cfg = compose_check(config_name, argv)
        if cfg is not None and config_name == "train":
            check_config(cfg)
        if cfg is not None and config_name == "eval":
            check_eval_config(cfg)
        if resume and run_dir and cfg is not None:
            from zoo.rundir import check_free

            check_free(run_dir)  # before Hydra writes RUN/.hydra over a live run's config
        if resume and cfg is not None and cfg.get("ckpt_path"):
            from zoo.run import check_resume  # torch loads here, for a resume only

            check_resume(cfg, str(cfg.ckpt_path))  # a refused resume leaves RUN's .hydra and status.json alone
    except ZooError as e:
        fail(str(e))
    sys.argv[1:] = argv
    hydra_main()


def _train(cfg: DictConfig) -> float | None:
    from zoo.run import train  # imported here so a bad command line fails before torch loads
    from zoo.sweeps import run_trial

    with user_errors():
        return run_trial(train, cfg)


def _evaluate(cfg: DictConfig) -> None:
    from zoo.evaluate import evaluate

    with user_errors():
        evaluate(cfg)


def train_main() -> None:
    """``zoo-train [overrides]``: ``python train.py`` of an installed zoo, with the configs of the package."""
    main(hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")(_train), resume=True)


def eval_main() -> None:
    """``zoo-eval ckpt_path=PATH [overrides]``: ``python eval.py`` of an installed zoo."""
    main(hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")(_evaluate))
