"""Cost of the terminal and TensorBoard extras of the default run: Rich progress bar + model summary, diagnostics.

Runs ``python train.py`` (LeNet-5 on the embedded digits) alternately with the old TQDM bar and no extras,
with Lightning's own Rich bar (updated after every batch) + RichModelSummary, with zoo's Rich bar (updated at
its redraw rate) + RichModelSummary, and with those plus the TensorBoardDiagnostics callback; prints the CPU
seconds (user + sys of the child, less sensitive to a busy machine than wall time) and wall seconds of each,
and their ratios to the baseline.

    python benchmarks/progress_bar_overhead.py --epochs 5 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "tqdm (baseline)": ["callbacks.progress_bar._target_=pytorch_lightning.callbacks.TQDMProgressBar",
                        "callbacks.progress_bar.refresh_rate=20", "~callbacks.progress_bar.leave",
                        "callbacks.model_summary=null", "callbacks.diagnostics=null"],
    "lightning's rich bar + summary": ["callbacks.progress_bar._target_=pytorch_lightning.callbacks.RichProgressBar",
                                       "callbacks.progress_bar.refresh_rate=1", "callbacks.diagnostics=null"],
    "rich + summary": ["callbacks.diagnostics=null"],
    "rich + summary + diagnostics (default)": [],
}


def run(args: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "train.py", f"hydra.run.dir={tmp}", *args], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "COLUMNS": "120"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(proc.stderr[-2000:])
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    cpu: dict[str, list[float]] = {k: [] for k in VARIANTS}
    wall: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for _ in range(a.repeats):  # interleaved, so a change in machine load hits every variant alike
        for name, extra in VARIANTS.items():
            c, w = run([f"trainer.max_epochs={a.epochs}", *extra])
            cpu[name].append(c)
            wall[name].append(w)
    base_c, base_w = min(cpu["tqdm (baseline)"]), min(wall["tqdm (baseline)"])
    print(f"{'variant':42s} {'cpu s (min)':>12s} {'ratio':>7s} {'wall s (min)':>13s} {'ratio':>7s}")
    for name in VARIANTS:
        c, w = min(cpu[name]), min(wall[name])
        print(f"{name:42s} {c:12.1f} {c / base_c:7.3f} {w:13.1f} {w / base_w:7.3f}")


if __name__ == "__main__":
    main()
