"""The benchmark scripts run end to end at toy sizes and print the ratios docs/benchmarks.md quotes."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT, run_cli


@pytest.mark.slow
def test_models_benchmark_prints_a_ratio_per_model_and_variant() -> None:
    proc = run_cli("benchmarks/models.py", "--models", "resnet18", "--variants", "plain", "channels_last",
                   "--size", "32", "--batch", "2", "--steps", "1", "--rounds", "2", "--warmup", "0",
                   "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = re.findall(r"^\| (\w+) \| (\w+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", proc.stdout, re.M)
    assert [(r[0], r[1]) for r in rows] == [("resnet18", "plain"), ("resnet18", "channels_last")], proc.stdout
    for _, _, ours, theirs, ratio in rows:  # the ratio is zoo images/s over torchvision images/s
        # printed to 0.1 img/s and 0.001: at tens of images a second the rounding alone moves the quotient 0.002
        bound = float(ratio) * (0.05 / float(ours) + 0.05 / float(theirs)) + 5e-4
        assert abs(float(ratio) - float(ours) / float(theirs)) <= bound, (ours, theirs, ratio)
    assert "minimum ratio" in proc.stdout


@pytest.mark.slow
def test_loop_benchmark_times_all_sides_and_prints_the_overheads() -> None:
    variant = "train.py callbacks.curves=null"  # a side with overrides, in the same rounds
    proc = run_cli("benchmarks/loop.py", "--train-size", "640", "--epochs", "1", "--rounds", "2", "--device", "cpu",
                   "--variant", "callbacks.curves=null")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rounds = re.findall(r"^round (\d) (plain|bare|train\.py(?: callbacks\.curves=null)?): ([\d.]+) s wall, "
                        r"([\d.]+) s CPU$", proc.stdout, re.M)
    assert sorted((r[0], r[1]) for r in rounds) == [(r, s) for r in "01"
                                                     for s in ("bare", "plain", "train.py", variant)]
    for i, clock in enumerate(("wall", "CPU")):
        m = re.search(rf"^{clock}\s+overhead ([+-][\d.]+)% .* Lightning alone ([+-][\d.]+)%, ours on top of it "
                      rf"([+-][\d.]+)%$", proc.stdout, re.M)
        assert m, proc.stdout
        t = {side: [float(r[2 + i]) for r in rounds if r[1] == side] for side in ("plain", "bare", "train.py")}
        for printed, (a, b) in zip(m.groups(), [("plain", "train.py"), ("plain", "bare"), ("bare", "train.py")]):
            ratios = [y / x for x, y in zip(t[a], t[b])]
            assert float(printed) == pytest.approx(100 * (sum(ratios) / 2 - 1), abs=0.5)  # the median of two
        m = re.search(rf"^{clock}\s+{re.escape(variant)}: ([+-][\d.]+)% over bare, ([+-][\d.]+)% against train.py$",
                      proc.stdout, re.M)
        assert m, proc.stdout
        t[variant] = [float(r[2 + i]) for r in rounds if r[1] == variant]
        for printed, base in zip(m.groups(), ("bare", "train.py")):
            ratios = [y / x for x, y in zip(t[base], t[variant])]
            assert float(printed) == pytest.approx(100 * (sum(ratios) / 2 - 1), abs=0.5)


def test_loop_only_runs_one_side_for_a_profiler() -> None:
    proc = run_cli("benchmarks/loop.py", "--train-size", "640", "--epochs", "1", "--rounds", "2", "--device", "cpu",
                   "--only", "bare")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rounds = re.findall(r"^round (\d) (\S+): [\d.]+ s wall, [\d.]+ s CPU$", proc.stdout, re.M)
    assert rounds == [("0", "bare"), ("1", "bare")]
    assert "overhead" not in proc.stdout


def _raw(path, stacks: dict[str, int]) -> str:
    """A py-spy raw file: per line a stack, outermost frame first, frames joined by ';', then its sample count."""
    path.write_text("".join(f"{stack} {n}\n" for stack, n in stacks.items()))
    return str(path)


def test_spy_split_counts_only_timed_rounds_and_splits_them_into_parts(tmp_path) -> None:
    """A py-spy raw file is ``frame;frame;... count`` per line: samples outside a timed round's fit (imports,
    the warm-up, the Trainer built before fit) are left out, the rest go to the part their frames name."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("spy_split", ROOT / "benchmarks" / "spy_split.py")
    spy_split = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(spy_split)
    net = "forward (/src/zoo/models/lenet.py:2)"
    top = "<module> (loop.py:1);main (loop.py:2);"
    fit = top + "timed_round (loop.py:3);lightning_fit (loop.py:4);Trainer._fit_impl (t.py:5)"
    hook = fit + ";_run_stage (t.py:6);_call_callback_hooks (call.py:227)"
    first = _raw(tmp_path / "first.raw", {
        fit + ";_run_stage (t.py:6);training_step (tasks.py:1);" + net: 60,
        hook + ";Callback.state_key (callback.py:41)": 10,
        hook + ";EpochCurves.on_fit_end (diagnostics.py:300);savefig (figure.py:1)": 20,
        fit + ";_run_stage (t.py:6);fetchers.py (fetchers.py:61)": 10,
        top + "lightning_fit (loop.py:4);Trainer._fit_impl (t.py:5)": 500,  # the warm-up
        "<module> (loop.py:1);_find_and_load (<frozen importlib._bootstrap>:1)": 900,  # imports
    })
    parts, total = spy_split.split(first)
    assert total == 100
    assert parts == {spy_split.NETWORK: 60, spy_split.DISPATCH: 10, "data: batches from the datamodule": 10,
                     "callback EpochCurves.on_fit_end (diagnostics.py)": 20}
    bare = fit.replace("lightning_fit", "bare_fit") + ";_run_stage (t.py:6);"
    second = _raw(tmp_path / "second.raw", {bare + "training_step (loop.py:9);" + net: 9,
                                            bare + "fetchers.py (fetchers.py:61)": 1})
    proc = run_cli("benchmarks/spy_split.py", first, second)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("callback EpochCurves"))
    assert line.split()[-3:] == ["20.00%", "0.00%", "+20.00"]
    assert "the callbacks' own work is 20.0% and Lightning's dispatch to them 10.0% (second: 0.0%)" in proc.stdout
    # the network's work is the same on both sides: 60% of the first's samples, 90% of the second's
    assert "the first side takes +50.0% longer than the second" in proc.stdout
