"""What the thin entry points share: user errors as one line, and a check of config-group names.

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

from zoo.errors import ZooError, causes

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
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
    for arg in argv:
        m = _GROUP_OVERRIDE.match(arg)
        if not m or m.group(1).startswith("hydra/") or not (config_dir / m.group(1)).is_dir():
            continue  # hydra/launcher=joblib etc. live in plugins: Hydra names the valid ones itself
        group, value = m.groups()
        if value in ("null", "") or any(c in value for c in "()[]{}$"):
            continue  # sweep functions and interpolations are Hydra's to judge
        options = group_options(group, config_dir)
        for choice in value.split(","):
            if choice and not (config_dir / group / f"{choice}.yaml").is_file():
                close = difflib.get_close_matches(choice, options, n=3, cutoff=0.5)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ZooError(f"unknown {group} {choice!r}{hint}; valid: {', '.join(options)}")


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


def main(hydra_main: Callable[[], Any], resume: bool = False) -> None:
    """Run a ``@hydra.main`` function after checking the command line's group names.

    ``resume=True`` (train.py): a ``ckpt_path=`` inside a run directory continues in that directory.
    """
    try:
        check_overrides(sys.argv[1:])
    except ZooError as e:
        fail(str(e))
    if resume:
        try:
            sys.argv[1:] = resume_overrides(sys.argv[1:])
            check_overrides(sys.argv[1:])  # the run directory's group choices are checked like the command line's
        except ZooError as e:
            fail(str(e))
    hydra_main()
