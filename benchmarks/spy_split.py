"""Where a ``train.py`` fit spends the time a bare LightningModule's fit does not, from py-spy samples.

A sequential benchmark on a shared machine scatters by more than the differences it looks for
(``benchmarks/loop.py``'s rounds, docs/benchmarks.md). A profile splits one fit's time into parts of that same
fit, so machine drift moves every part alike. Record one timed round of each side, then compare:

    py-spy record -r 250 -f raw -o train.raw -- python benchmarks/loop.py --only train.py --rounds 1
    py-spy record -r 250 -f raw -o bare.raw -- python benchmarks/loop.py --only bare --rounds 1
    python benchmarks/spy_split.py train.raw bare.raw

(``pip install py-spy``; add ``OMP_NUM_THREADS=1`` to both recordings as to loop.py.) Only samples of the main
thread inside a timed round count (loop.py's ``timed_round``; the warm-up fit and the imports are left out).
Each part is printed as a percentage of its side's samples; the last column is the first side's minus the
second's, in points. Both sides run the same network on the same batches, so the network's share of each fit
gives the overhead of one side over the other without comparing two runs' clocks.
"""

from __future__ import annotations

import argparse
import collections
import re

NETWORK = "the network: forward, backward, Adam's arithmetic"
DISPATCH = "Lightning's dispatch of hooks to the callbacks"  # not in a callback's own method (those get a row each)
# (part, a pattern that a frame of the stack matches), first match wins; frames are "function (file:line)".
PARTS = [
    ("data: batches from the datamodule", re.compile(r"fetchers\.py")),
    ("validation loop, other", re.compile(r"evaluation_loop\.py")),
    ("logging: self.log, results, loggers", re.compile(r"_ResultCollection|_LoggerConnector|LightningModule\.log ")),
    ("zero_grad", re.compile(r"zero_grad")),
    ("torch's accelerator query in Optimizer.step", re.compile(r"current_accelerator")),
    ("training step, other", re.compile(r"training_step")),
    ("Lightning's loop, other", re.compile(r"_run_stage")),
]
_CALLBACK_OVERHEAD = re.compile(r"contextlib|state_key|__setattr__|lightning_module|Logger\.debug|profile")
_FIT = re.compile(r"^(Trainer\._fit_impl|plain_fit) ")  # py-spy names a method with its class
_FRAME = re.compile(r"^(.*?) \((?:.*/)?([^/]+\.py):\d+\)$")


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    return f"{m.group(1)} ({m.group(2)})" if m else frame


def part_of(frames: list[str]) -> str:
    """The part one sample (its stack, outermost frame first) belongs to."""
    stack = ";".join(frames)
    in_step = any(s in stack for s in ("training_step", "validation_step", "_eval_step"))
    if (in_step and "zoo/models/" in stack) or "run_backward" in stack \
            or "_single_tensor_adam" in stack or "_multi_tensor_adam" in stack:
        return NETWORK
    for i, frame in enumerate(frames):
        if frame.startswith("_call_callback_hooks "):
            inner = frames[i + 1] if i + 1 < len(frames) else ""
            return DISPATCH if not inner or _CALLBACK_OVERHEAD.search(inner) else f"callback {_short(inner)}"
    for name, pattern in PARTS:
        if any(pattern.search(f) for f in frames):
            return name
    return "setup and teardown of the fit, other"


def split(path: str) -> tuple[collections.Counter[str], int]:
    """Samples per part of the timed rounds in a ``py-spy record -f raw`` file, and their total."""
    parts: collections.Counter[str] = collections.Counter()
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            frames = stack.split(";")
            # a timed round's fit itself: Lightning's _fit_impl (not the config and Trainer built before it)
            if not count.isdigit() or not any(fr.startswith("timed_round ") for fr in frames) \
                    or not any(_FIT.match(fr) for fr in frames):
                continue
            parts[part_of(frames)] += int(count)
    return parts, sum(parts.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("first", help="py-spy raw file of one side (e.g. train.py)")
    p.add_argument("second", help="py-spy raw file of the side to compare with (e.g. bare)")
    args = p.parse_args()
    (a, ta), (b, tb) = split(args.first), split(args.second)
    if not ta or not tb:
        raise SystemExit(f"error: no samples of a timed round in {args.first if not ta else args.second} "
                         "(record benchmarks/loop.py --only SIDE)")
    rows = sorted(set(a) | set(b), key=lambda k: -(a[k] / ta - b[k] / tb))
    print(f"{'part':60s} {'first':>7s} {'second':>7s} {'diff':>7s}")
    for k in rows:
        print(f"{k[:60]:60s} {100 * a[k] / ta:6.2f}% {100 * b[k] / tb:6.2f}% {100 * (a[k] / ta - b[k] / tb):+6.2f}")
    own = sum(a[k] for k in a if k.startswith("callback ")) / ta
    print(f"\nsamples: first {ta}, second {tb}; in the first, the callbacks' own work is {100 * own:.1f}% and "
          f"Lightning's dispatch to them {100 * a[DISPATCH] / ta:.1f}% "
          f"(second: {100 * b[DISPATCH] / tb:.1f}%)")
    if a[NETWORK] and b[NETWORK]:  # the same arithmetic on both sides, so its share of each fit is a yardstick
        print(f"the network's work is {100 * a[NETWORK] / ta:.1f}% of the first side's fit and "
              f"{100 * b[NETWORK] / tb:.1f}% of the second's: if it took the same time in both, the first side takes "
              f"{100 * ((b[NETWORK] / tb) / (a[NETWORK] / ta) - 1):+.1f}% longer than the second")


if __name__ == "__main__":
    main()
