"""eval.py's and zoo.export's mistakes end in one ``error:`` line and exit 2; odd but valid inputs (a path with
spaces or non-ASCII letters, ``opset=``) simply work; predictions.csv cannot smuggle spreadsheet formulas."""

from __future__ import annotations

import csv
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli, run_script
from tests.test_checkpoints import write_checkpoint
from zoo.errors import ZooError


def _one_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(("arg", "expected"), [
    ("topk=abc", "topk must be a whole number >= 1; got 'abc'"),
    ("topk=0", "topk must be a whole number >= 1; got 0"),
    ("temperature=abc", "temperature must be a number >= 0 (0 always takes the likeliest character); got 'abc'"),
    ("temperature=-1", "temperature must be a number >= 0"),
    ("sample_length=-5", "sample_length must be a whole number >= 0; got -5"),
])
def test_eval_values_are_one_line_before_torch(arg: str, expected: str, tmp_path: Path) -> None:
    proc = run_script("eval.py", "ckpt_path=nowhere.ckpt", arg, f"hydra.run.dir={tmp_path}", timeout=60)
    assert expected in _one_line(proc)


def test_the_eval_checks_pass_the_defaults() -> None:
    from zoo import cli

    cfg = cli.compose_check("eval", ["ckpt_path=x.ckpt", "topk=3", "temperature=0"], ROOT / "configs")
    cli.check_eval_config(cfg)  # no error
    assert (cfg.topk, cfg.temperature) == (3, 0)


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels (its header only, as a bomb would be): no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _predict(ckpt: Path, target: Path | str, out: Path) -> list[dict]:
    from zoo.evaluate import predict

    return predict(str(ckpt), str(target), 3, out)


def test_a_huge_image_is_refused_by_its_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    ckpt = write_checkpoint(tmp_path / "lenet.ckpt")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(20000, 20000))  # 400 million pixels: PIL's DecompressionBombError on open
    with pytest.raises(ZooError, match="bomb.png is too large to decode"):
        _predict(ckpt, bomb, tmp_path / "out")
    big = tmp_path / "big.png"
    big.write_bytes(_png_header(12000, 8000))  # 96 million: over MAX_IMAGE_PIXELS, under the bomb error
    with pytest.raises(ZooError, match=r"big.png is 12000x8000 pixels, more than the \d+ this decodes"):
        _predict(ckpt, big, tmp_path / "out")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # the same check on a real image, decoded or not
    Image.new("L", (20, 20)).save(tmp_path / "small.png")
    with pytest.raises(ZooError, match="small.png is 20x20 pixels, more than the 300"):
        _predict(ckpt, tmp_path / "small.png", tmp_path / "out")
    assert not (tmp_path / "out" / "predictions.csv").exists()


def test_a_device_is_not_an_image(tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "lenet.ckpt")
    with pytest.raises(ZooError, match="predict=/dev/zero: not a regular file or a folder"):
        _predict(ckpt, "/dev/zero", tmp_path / "out")


def test_predict_on_a_path_with_spaces_and_non_ascii_letters_works(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "mes chiffres (été)"
    folder.mkdir()
    ckpt = write_checkpoint(folder / "modèle 1.ckpt")
    Image.new("L", (28, 28), 200).save(folder / "çhiffre ü.png")
    proc = run_cli("eval.py", f"ckpt_path={ckpt}", f"predict={folder / 'çhiffre ü.png'}", "topk=2",
                   f"hydra.run.dir={folder / 'sortie é'}", "trainer.accelerator=cpu", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(folder / "sortie é" / "predictions.csv", encoding="utf-8")))
    assert [r["image"] for r in rows] == [str(folder / "çhiffre ü.png")] and set(rows[0]) >= {"class_1", "prob_2"}


def test_predictions_csv_cells_that_would_be_formulas_are_escaped(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    ckpt = write_checkpoint(tmp_path / "lenet.ckpt")
    names = ["=HYPERLINK(x).png", "+1.png", "-2.png", "@SUM(A1).png", "plain.png"]
    images = tmp_path / "images"
    images.mkdir()
    for n in names:
        Image.new("L", (28, 28), 100).save(images / n)
    monkeypatch.chdir(images)  # predict=. : the image cells are the bare file names
    _predict(ckpt, ".", tmp_path / "out")
    read = list(csv.DictReader(open(tmp_path / "out" / "predictions.csv", encoding="utf-8")))
    assert sorted(r["image"] for r in read) == sorted(["'" + n if n[0] in "=+-@" else n for n in names])
    assert all(0 <= float(r["prob_1"]) <= 1 for r in read)  # numbers stay numbers


def test_a_class_name_that_is_a_formula_is_escaped(tmp_path: Path) -> None:
    from PIL import Image

    from tests.test_checkpoints import legacy_hparams

    hp = legacy_hparams()
    hp["data"]["facts"]["class_names"] = ["=cmd|' /C calc'!A0", *[f"-{i}" for i in range(1, 10)]]
    ckpt = write_checkpoint(tmp_path / "lenet.ckpt", hp=hp)
    Image.new("L", (28, 28), 100).save(tmp_path / "x.png")
    _predict(ckpt, tmp_path / "x.png", tmp_path / "out")
    row = next(csv.DictReader(open(tmp_path / "out" / "predictions.csv", encoding="utf-8")))
    classes = [row[f"class_{r}"] for r in (1, 2, 3)]
    assert all(c.startswith("'") and c[1:2] in "=-" for c in classes), classes


# -- python -m zoo.export ------------------------------------------------------------------------------------


def _export(*args: str) -> subprocess.CompletedProcess:
    """``python -m zoo.export ARGS`` in this process (test_export runs the real command line)."""
    return run_cli("-m", "zoo.export", *args)


@pytest.mark.parametrize(("args", "expected"), [
    (["opset=abc"], "opset=abc: supported ONNX opsets are 18 to "),
    (["opset=9"], "opset=9: supported ONNX opsets are 18 to "),
    (["format=torchscript", "opset=18"], "opset= is for format=onnx"),
    (["output=/proc/x/a.onnx"], "output=/proc/x/a.onnx: cannot make the folder /proc/x"),
])
def test_export_mistakes_are_one_line(args: list[str], expected: str, tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "lenet.ckpt")
    assert expected in _one_line(_export(f"ckpt_path={ckpt}", *args))
    assert not any(p.suffix == ".onnx" for p in tmp_path.iterdir())


@pytest.mark.slow
def test_the_opset_asked_for_is_the_opset_written(tmp_path: Path) -> None:
    import onnx

    from zoo.export import export, opset_range

    ckpt = write_checkpoint(tmp_path / "lenet.ckpt")
    low, high = opset_range()
    for opset in sorted({low, 20, high}):
        out = export(ckpt, "onnx", tmp_path / f"o{opset}.onnx", str(opset))
        assert [i.version for i in onnx.load(str(out)).opset_import if i.domain in ("", "ai.onnx")] == [opset]


@pytest.mark.parametrize("path", ["/tmp/données/été (2).png", "/tmp/a b/x.png", "C:/x~y/a+b@c.png",
                                  "/tmp/it's/x.png", "/tmp/a,b.png", "/tmp/[x]/y.png", "/tmp/数字/x.png"])
def test_any_path_reaches_the_config_as_typed(path: str) -> None:
    from zoo import cli

    argv = cli.quote_paths([f"predict={path}", f"hydra.run.dir={path}.run", "topk=2"])
    assert argv[2] == "topk=2"  # values that are not paths are Hydra's as they are
    cfg = cli.compose_check("eval", ["ckpt_path=x.ckpt", *argv], ROOT / "configs")
    assert cfg.predict == path
