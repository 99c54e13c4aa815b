"""Ship a network to another runtime: ``python -m zoo.export ckpt_path=PATH format=onnx|torchscript|safetensors``.

The checkpoint's record (zoo.checkpoint) alone says what to build and what an input looks like:
N x C x H x W images, N x T x F float sequences, or N x T token ids for language models. ONNX and
TorchScript files take any batch size; ``.safetensors`` holds the weights only (no pickle, nothing to
execute), with the model name and sizes in its metadata.

Options: ``output=FILE`` (default: next to the checkpoint, its name with the format's suffix),
``opset=N`` for ONNX (18 to the newest opset the installed onnx knows; anything else is refused).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from zoo.checkpoint import Record
from zoo.errors import ZooError

FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors"}
# The dynamo exporter writes opset 18 and up; asked for less, its down-conversion fails and it writes 18 anyway.
MIN_OPSET = 18


def opset_range() -> tuple[int, int]:
    """The ONNX opsets an export can be asked for: from the exporter's lowest to the newest the onnx package knows."""
    import onnx

    return MIN_OPSET, int(onnx.defs.onnx_opset_version())


def check_opset(opset: object) -> int | None:
    """``opset=N`` as a whole number in :func:`opset_range`, or None (the exporter's default)."""
    if opset is None:
        return None
    low, high = opset_range()
    try:
        value = int(str(opset), 10)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ZooError(f"opset={opset}: supported ONNX opsets are {low} to {high}")
    return value


def writable_output(out: Path, option: str) -> Path:
    """The output file's folder made (or found) and writable, before any work is spent on the export."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ZooError(f"{option}={out}: cannot make the folder {out.parent} ({e.strerror})") from None
    if out.is_dir():
        raise ZooError(f"{option}={out} is a folder; name the file to write")
    if not os.access(out.parent, os.W_OK):
        raise ZooError(f"{option}={out}: the folder {out.parent} is not writable")
    return out


def example_input(record: Record, batch: int = 2) -> torch.Tensor:
    """A batch shaped like the checkpoint's data: images, float sequences, or token ids."""
    shape = list(record.facts.input_shape)
    if not shape:
        raise ZooError(f"{record.source} does not record its input shape (facts.input_shape)")
    g = torch.Generator().manual_seed(0)
    if record.task == "language_model":
        return torch.randint(0, record.in_channels, (batch, shape[0]), generator=g)  # N x T token ids
    return torch.randn(batch, *shape, generator=g)  # N x C x H x W or N x T x F


def _tokens_or_features(net: nn.Module, record: Record, batch: int = 2) -> torch.Tensor:
    x = example_input(record, batch)
    if x.is_floating_point():
        try:
            with torch.no_grad():
                net(x)
        except Exception:  # a token model (copy task) fed floats: give it ids instead
            return torch.randint(0, record.in_channels, x.shape[:2], generator=torch.Generator().manual_seed(0))
    return x


def export_onnx(net: nn.Module, x: torch.Tensor, path: Path, opset: int | None = None) -> Path:
    """ONNX with a dynamic batch dimension (the dynamo exporter, onnxscript), weights inside the file."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (x,), dynamo=True, input_names=["input"], output_names=["logits"],
                                    dynamic_shapes=({0: batch},), opset_version=opset, external_data=False,
                                    verbose=False)
    program.save(str(path), external_data=False)
    import onnx

    written = next((i.version for i in onnx.load(str(path), load_external_data=False).opset_import
                    if i.domain in ("", "ai.onnx")), None)
    if opset is not None and written != opset:  # the exporter falls back silently: never report a file as asked
        path.unlink(missing_ok=True)
        raise ZooError(f"opset={opset}: the exporter wrote opset {written} instead; "
                       f"supported ONNX opsets are {' to '.join(map(str, opset_range()))}")
    return path


def export_torchscript(net: nn.Module, x: torch.Tensor, path: Path) -> Path:
    """``torch.jit.trace`` (one code path per input shape class; the zoo's forwards have no data-dependent branches)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, (x,), check_trace=False)
    traced.save(str(path))
    return path


def export_safetensors(net: nn.Module, record: Record, path: Path) -> Path:
    """Weights only, no pickle; ``zoo.load_pretrained(path)`` reads it back (the record, as JSON metadata)."""
    from safetensors.torch import save_model

    meta = {"zoo_record": json.dumps(record.to_dict(), default=lambda t: t.tolist())}  # tensors (whitening) as lists
    save_model(net, str(path), metadata=meta)  # save_model handles tied weights (one copy of each)
    return path


def export(ckpt_path: str | Path, fmt: str, output: str | Path | None = None,
           opset: int | str | None = None) -> Path:
    """Write the checkpoint's network in ``fmt``; return the file written."""
    from zoo.checkpoint import load_record
    from zoo.evaluate import network

    if fmt not in FORMATS:
        raise ZooError(f"format={fmt!r}: valid: {', '.join(FORMATS)}")
    if opset is not None and fmt != "onnx":
        raise ZooError(f"opset= is for format=onnx; format={fmt} has no opset")
    opset = check_opset(opset) if fmt == "onnx" else None
    out = writable_output(Path(output) if output else Path(ckpt_path).with_suffix(FORMATS[fmt]),
                          "output" if output else "ckpt_path")
    ckpt, record = load_record(ckpt_path)
    net = network(ckpt, record).float().eval()
    if fmt == "safetensors":
        return export_safetensors(net, record, out)
    x = _tokens_or_features(net, record)
    if fmt == "onnx":
        return export_onnx(net, x, out, opset)
    return export_torchscript(net, x, out)


def _parse(argv: list[str]) -> dict[str, str]:
    args = {}
    for a in argv:
        if "=" not in a:
            raise ZooError(f"expected key=value arguments (ckpt_path=, format=, output=, opset=); got {a!r}")
        k, v = a.split("=", 1)
        if k not in ("ckpt_path", "format", "output", "opset"):
            raise ZooError(f"unknown option {k!r}; valid: ckpt_path, format, output, opset")
        args[k] = v
    if "ckpt_path" not in args:
        raise ZooError("usage: python -m zoo.export ckpt_path=PATH format=onnx|torchscript|safetensors [output=FILE] "
                       "[opset=N]")
    return args


def main(argv: list[str] | None = None) -> int:
    from zoo.cli import user_errors

    with user_errors():
        args = _parse(sys.argv[1:] if argv is None else argv)
        out = export(args["ckpt_path"], args.get("format", "onnx"), args.get("output"), args.get("opset"))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
