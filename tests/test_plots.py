"""Plots where a table is hard to read: sweep_summary.png and the receptive field per stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from zoo import stats, sweeps


def _trial(root: Path, name: str, overrides: list[str], status: str, metrics: dict | None) -> None:
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"optimized_metric": "val/acc", "optimized_mode": "max"}))
    (d / "status.json").write_text(json.dumps({"status": status}))
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics))


def test_sweep_summary_png_has_one_point_per_trial_against_each_varied_setting(tmp_path: Path) -> None:
    from PIL import Image

    trials = [("0", "0.1", "lenet5", 0.91), ("1", "0.01", "lenet5", 0.95), ("2", "0.001", "mlp", 0.88),
              ("3", "1.0", "mlp", None)]  # the last one failed: no value to plot
    for name, lr, model, acc in trials:
        _trial(tmp_path, name, [f"optimizer.lr={lr}", f"model={model}", "seed=1"], "ok" if acc else "failed",
               {"val/acc": acc} if acc else None)
    sweeps.write_summary(tmp_path)
    with Image.open(tmp_path / sweeps.SUMMARY_PNG) as im:
        assert im.format == "PNG"

    fig = sweeps.summary_figure(sweeps.collect(tmp_path))
    lr_ax, model_ax = fig.axes  # seed is shared by all trials: no panel
    assert lr_ax.get_xlabel() == "optimizer.lr" and lr_ax.get_xscale() == "log"  # 0.001 .. 0.1 spans 100x
    assert model_ax.get_xlabel() == "model" and [t.get_text() for t in model_ax.get_xticklabels()] == ["lenet5", "mlp"]
    points = lr_ax.collections[0].get_offsets().tolist()  # best first, as collect() orders them
    assert points == [[0.01, 0.95], [0.1, 0.91], [0.001, 0.88]]
    assert model_ax.collections[0].get_offsets().tolist() == [[0.0, 0.95], [0.0, 0.91], [1.0, 0.88]]
    assert lr_ax.collections[1].get_offsets().tolist() == [[0.01, 0.95]]  # the star on the best trial
    assert "1 trial without a value not shown" in fig._suptitle.get_text()


def test_no_png_when_nothing_varies(tmp_path: Path) -> None:
    _trial(tmp_path, "0", ["seed=1"], "ok", {"val/acc": 0.5})
    sweeps.write_summary(tmp_path)
    assert (tmp_path / sweeps.SUMMARY_CSV).is_file() and not (tmp_path / sweeps.SUMMARY_PNG).exists()


def test_stats_plot_draws_the_receptive_field_of_each_stage(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    stats.main(["lenet5", "--plot"])
    out = capsys.readouterr().out
    assert (tmp_path / "receptive_field_lenet5.png").is_file() and "plot: receptive_field_lenet5.png" in out
    # LeNet-5 by hand: conv5 -> 5, pool2 -> 6 (jump 2), conv5 -> 14, pool2 -> 16 (jump 4)
    assert "| 14x14 | 6 | 6 | 2 |" in out and "| 5x5 | 16 | 16 | 4 |" in out
    import zoo

    s = stats.summary(zoo.create_model("lenet5", in_channels=1), (1, 32, 32))
    fig = stats.receptive_field_figure(s, "lenet5")
    frame, curve = fig.axes[:2]
    assert curve.lines[0].get_ydata().tolist() == [st.receptive_field for st in s.stages]
    assert curve.lines[1].get_ydata().tolist() == [st.jump for st in s.stages]
    squares = [p for p in frame.patches if not p.fill][1:]  # the input frame, then one square per stage
    assert [(p.get_width(), p.get_xy()[0]) for p in squares] == [(r, (32 - r) / 2) for r in (5, 6, 14, 16)]


@pytest.mark.parametrize("argv, message", [(["lenet55", "--plot"], "error: unknown model 'lenet55'; did you mean"),
                                           (["lstm", "--plot"], "error: lstm is a sequence model"),
                                           (["--plot"], "error: usage: python -m zoo.stats NAME --plot")])
def test_stats_plot_mistakes_end_in_one_line(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        stats.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
