"""``run_cli`` (tests/conftest.py) runs an entry point in the test process: it must give what a process of its own
gives (exit code, stdout, stderr, a traceback for what escapes) and leave the process as it found it."""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings
from pathlib import Path

import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

from tests.conftest import ROOT, run_cli, run_script

# A script that changes everything process-wide that an entry point may change, then prints and warns.
MESSY = """
import logging, os, signal, sys, warnings

os.chdir(os.environ["MESSY_DIR"])
sys.argv.append("--changed")
sys.path.insert(0, "/nowhere")
os.environ["MESSY_LEFT"] = "1"
signal.signal(signal.SIGTERM, lambda *a: None)
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
logging.getLogger().addHandler(logging.FileHandler(os.path.join(os.environ["MESSY_DIR"], "x.log")))
logging.getLogger().setLevel(logging.DEBUG)
logging.getLogger("pytorch_lightning").setLevel(logging.CRITICAL)
warnings.simplefilter("error")
if os.environ.get("MESSY_CONFIGS"):  # torch, matplotlib and Hydra: what a process of its own need not import
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from hydra import initialize_config_dir

    torch.set_num_threads(3)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_default_dtype(torch.float64)
    torch.set_float32_matmul_precision("medium")
    torch.backends.cudnn.benchmark = True
    torch.set_grad_enabled(False)
    torch.manual_seed(123)
    plt.figure()
    initialize_config_dir(config_dir=os.environ["MESSY_CONFIGS"], version_base="1.3")  # left initialised
print("to stdout", sys.argv[1:])
print("to stderr", file=sys.stderr)
warnings.simplefilter("always")
warnings.warn("a warning a process would print", UserWarning)
sys.exit(int(os.environ.get("MESSY_CODE", "0")))
"""


def _state() -> dict:
    root = logging.getLogger()
    import matplotlib.pyplot as plt

    return {
        "cwd": os.getcwd(), "argv": sys.argv[:], "path": sys.path[:], "environ": dict(os.environ),
        "signals": {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)},
        "mask": signal.pthread_sigmask(signal.SIG_BLOCK, []),
        "root": (root.level, root.handlers[:]), "pl": logging.getLogger("pytorch_lightning").level,
        "warnings": warnings.filters[:], "showwarning": warnings.showwarning,
        "torch": (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), torch.get_default_dtype(),
                  torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark, torch.is_grad_enabled()),
        "rng": torch.get_rng_state(), "figures": plt.get_fignums(), "hydra": GlobalHydra.instance().is_initialized(),
    }


def test_in_process_run_gives_a_processs_result_and_leaves_no_state_behind(tmp_path: Path) -> None:
    script = tmp_path / "messy.py"
    script.write_text(MESSY)
    env = {"MESSY_DIR": str(tmp_path), "MESSY_CONFIGS": str(ROOT / "configs"), "MESSY_CODE": "3"}
    import matplotlib.pyplot as plt

    own = plt.figure()  # the test's own figure stays open; the script's is closed
    before = _state()
    proc = run_cli(str(script), "a=1", env=env)
    after = _state()
    assert plt.fignum_exists(own.number)
    plt.close(own)
    assert proc.returncode == 3
    assert proc.stdout == "to stdout ['a=1', '--changed']\n"
    err = proc.stderr.splitlines()
    assert err[0] == "to stderr" and "UserWarning: a warning a process would print" in proc.stderr
    for key in before:
        if key == "rng":
            assert torch.equal(before[key], after[key]), "the random number generator state"
        else:
            assert before[key] == after[key], key
    assert "MESSY_LEFT" not in os.environ
    # the oracle: the same script in a process of its own gives the same result (without the torch part, which
    # prints nothing: 4-8 s of imports)
    real = run_script(str(script), "a=1", env={k: v for k, v in env.items() if k != "MESSY_CONFIGS"})
    assert (real.returncode, real.stdout, real.stderr.splitlines()[0]) == (3, proc.stdout, "to stderr")


def test_an_exception_that_escapes_is_a_traceback_and_exit_1(tmp_path: Path) -> None:
    """What escapes the entry point fails a test as it would in a process: exit 1 with a traceback on stderr, so
    the one-line-error assertions (exit 2, no ``Traceback``) fail."""
    script = tmp_path / "boom.py"
    script.write_text("print('started')\nraise RuntimeError('boom')\n")
    proc = run_cli(str(script))
    assert proc.returncode == 1 and proc.stdout == "started\n"
    assert proc.stderr.startswith("Traceback") and proc.stderr.strip().endswith("RuntimeError: boom")
    script.write_text("import sys\nsys.exit('a message')\n")  # sys.exit(str): the message on stderr, exit 1
    proc = run_cli(str(script))
    assert (proc.returncode, proc.stderr) == (1, "a message\n")


def test_train_py_in_process_keeps_the_contract_and_hydras_state_is_cleared(tmp_path: Path) -> None:
    """A user error after torch loads (an option the model lacks) and a short real run: one error line and exit 2,
    then exit 0, and Hydra's global state, its per-job log file handler and the run's seed are gone afterwards."""
    before, hydra_cfg = _state(), HydraConfig.instance().cfg
    bad = run_cli("train.py", "+model.nope=1", f"hydra.run.dir={tmp_path / 'bad'}")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: model 'lenet5' has no option 'nope' (configs/model/lenet5.yaml lists its options)"]
    ok = run_cli("train.py", "model=mlp", "++trainer.fast_dev_run=true", "trainer.deterministic=true", "test=false",
                 f"hydra.run.dir={tmp_path / 'ok'}", env={"HYDRA_FULL_ERROR": "1"})
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "Traceback" not in ok.stderr and (tmp_path / "ok" / "metrics.json").is_file()
    assert (tmp_path / "ok" / "train.log").is_file()  # Hydra's job log, through a handler that is closed now
    after = _state()
    for key in before:
        if key == "rng":
            assert torch.equal(before[key], after[key]), "seed_everything's state"
        else:
            assert before[key] == after[key], key
    assert not GlobalHydra.instance().is_initialized() and HydraConfig.instance().cfg is hydra_cfg
