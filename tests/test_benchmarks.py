"""The benchmark scripts run end to end at toy sizes and print the ratios docs/benchmarks.md quotes."""

from __future__ import annotations

import re

import pytest

from tests.conftest import run_cli


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
