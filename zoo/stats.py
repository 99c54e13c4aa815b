"""Model statistics: parameters, multiply-accumulates, activation memory and receptive fields.

``summary(model, (3, 224, 224))`` runs one forward pass at batch 1 and watches it twice over:
``torch.utils.flop_counter.FlopCounterMode`` counts the FLOPs of every matmul and convolution (MACs are half
of them), and a ``TorchFunctionMode`` follows each tensor's receptive field through every operation, so
functional code (``F.max_pool2d``), branches (Inception) and shortcuts (ResNet) are handled alike: a
convolution or pool with kernel k, stride s and dilation d turns (field r, jump j) into
(r + (k - 1) d j, j s); an operation with several inputs (add, concatenate) takes the largest field.

``python -m zoo.stats [PATTERN]`` prints the README's model table (built on the meta device: no memory,
no arithmetic, a few seconds for the whole zoo); ``python -m zoo.stats NAME --plot`` prints one model's stages
and draws their receptive fields into ``receptive_field_NAME.png``.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

_CONV = {"conv1d", "conv2d", "conv3d"}
_POOL = {"max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
         "_max_pool1d", "_max_pool2d", "_max_pool3d", "max_pool2d_with_indices", "lp_pool2d"}
_ADAPTIVE = {"adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d",
             "_adaptive_max_pool2d", "adaptive_max_pool2d_with_indices"}
_FLAT = {"flatten", "view", "reshape", "linear", "mean", "sum", "amax", "max", "squeeze"}  # spatial layout gone


@dataclass(frozen=True)
class Stage:
    """The receptive field at the end of one resolution: the last maps of size ``size`` see ``receptive_field``
    input pixels a side, and neighbouring units are ``jump`` input pixels apart (the stride so far)."""

    size: tuple[int, ...]
    channels: int
    receptive_field: int
    jump: int


@dataclass(frozen=True)
class Layer:
    """One convolution or pooling in execution order: the module (or function) that ran it and its field."""

    name: str
    op: str
    out_shape: tuple[int, ...]
    receptive_field: int
    jump: int


@dataclass
class Summary:
    params: int
    trainable_params: int
    macs: int
    activation_bytes: int
    input_size: tuple[int, ...]
    layers: list[Layer] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"input {tuple(self.input_size)}: {self.params:,} parameters ({self.trainable_params:,} trainable), "
            f"{self.macs / 1e9:.3f} GMACs, {self.activation_bytes / 2**20:.1f} MiB of activations at batch 1",
            "| size | channels | receptive field | jump |",
            "|---|---|---|---|",
        ]
        lines += [f"| {'x'.join(map(str, s.size))} | {s.channels} | {s.receptive_field} | {s.jump} |"
                  for s in self.stages]
        return "\n".join(lines)


def _first(v: Any) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[i] if len(args) > i else default


class _FieldTracer(TorchFunctionMode):
    """Carries (receptive field, jump) along every tensor of a forward pass; records convs and pools."""

    def __init__(self) -> None:
        super().__init__()
        self.meta: dict[int, tuple[torch.Tensor, int, int]] = {}  # id -> (tensor kept alive, field, jump)
        self.seen: dict[int, torch.Tensor] = {}  # every distinct op output, for activation memory
        self.layers: list[Layer] = []
        self.trail: list[tuple[tuple[int, ...], int, int, int]] = []  # (spatial size, channels, field, jump)
        self.scope: list[str] = []
        self.ndim = 4  # the input's dimensions: outputs with more are regroupings, not maps

    def mark(self, t: torch.Tensor, rf: int, jump: int) -> None:
        self.meta[id(t)] = (t, rf, jump)

    def _inputs(self, args: tuple, kwargs: dict) -> tuple[int, int] | None:
        found: list[tuple[int, int]] = []

        def visit(a: Any) -> None:
            if isinstance(a, torch.Tensor) and id(a) in self.meta and self.meta[id(a)][0] is a:
                found.append(self.meta[id(a)][1:])
            elif isinstance(a, (list, tuple)):
                for b in a:
                    visit(b)

        visit(args)
        visit(tuple(kwargs.values()))
        return (max(f[0] for f in found), max(f[1] for f in found)) if found else None

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        outs = [o for o in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(o, torch.Tensor)]
        for o in outs:
            if o._base is None and o.numel() > 0:
                self.seen.setdefault(id(o), o)
        inp = self._inputs(args, kwargs)
        if inp is not None and name in ("view", "reshape") and _keeps_map(args[0], outs):
            self.mark(outs[0], *inp)  # channels regrouped over the same map (ShuffleNet's channel shuffle)
            return out
        if inp is None or not outs or name in _FLAT or name.startswith("__get"):
            return out
        rf, jump = inp
        x = args[0] if args else None
        spatial = name in _CONV or name in _POOL or name in _ADAPTIVE
        if name in _CONV:
            k, s, d = args[1].shape[-1], _first(_arg(args, kwargs, 3, "stride", 1)), _first(
                _arg(args, kwargs, 5, "dilation", 1))
            rf, jump = rf + (k - 1) * d * jump, jump * s
        elif name in _POOL:
            k = _first(_arg(args, kwargs, 1, "kernel_size", 1))
            s = _arg(args, kwargs, 2, "stride", None)
            s = k if s is None or s == [] or s == () else _first(s)
            d = _first(_arg(args, kwargs, 4, "dilation", 1)) if "max" in name else 1
            rf, jump = rf + (k - 1) * d * jump, jump * s
        elif name in _ADAPTIVE and isinstance(x, torch.Tensor):
            i, o = x.shape[-1], outs[0].shape[-1]
            k, s = math.ceil(i / o), max(1, i // o)
            rf, jump = rf + (k - 1) * jump, jump * s
        for o in outs[:1] if spatial else outs:
            self.mark(o, rf, jump)
        y = outs[0]
        if 3 <= y.dim() <= self.ndim:  # a map, not an intermediate regrouping with more dimensions
            self.trail.append((tuple(y.shape[2:]), y.shape[1], rf, jump))
            if spatial:
                where = self.scope[-1] if self.scope and self.scope[-1] else name
                self.layers.append(Layer(where, name, tuple(y.shape), rf, jump))
        return out


def _keeps_map(x: Any, outs: list[torch.Tensor]) -> bool:
    """A reshape that leaves the last two (spatial) dimensions alone, so each unit still sees its field."""
    return (isinstance(x, torch.Tensor) and len(outs) == 1 and x.dim() >= 3 and outs[0].dim() >= 3
            and x.shape[-2:] == outs[0].shape[-2:])


def _stages(trail: list[tuple[tuple[int, ...], int, int, int]]) -> list[Stage]:
    """One stage per spatial size, in order of first appearance, with the largest field seen at that size
    (a concatenation of branches has it; a branch that re-reads an earlier map does not start a new stage)."""
    stages: dict[tuple[int, ...], Stage] = {}
    for size, channels, rf, jump in trail:
        if rf <= 1:
            continue  # the input itself, padded or sliced
        last = stages.get(size)
        if last is None or rf >= last.receptive_field:
            stages[size] = Stage(size, channels, rf, max(jump, last.jump if last else jump))
    return list(stages.values())


@torch.no_grad()
def summary(model: nn.Module, input_size: tuple[int, ...]) -> Summary:
    """Parameters, MACs, activation memory and receptive fields of ``model`` on one input of ``input_size``.

    ``input_size`` is (C, H, W) (batch 1 is added) or a full (N, C, H, W). The model runs once in eval mode on
    the device of its parameters; on the meta device nothing is computed and everything but values still works.
    """
    size = tuple(int(s) for s in input_size)
    shape = size if len(size) == 4 else (1, *size)
    p = next(model.parameters(), None)
    x = torch.randn(shape, device=p.device if p is not None else "cpu", dtype=p.dtype if p is not None else None)
    tracer = _FieldTracer()
    hooks = []
    for name, m in model.named_modules():
        hooks.append(m.register_forward_pre_hook(lambda _m, _i, n=name: tracer.scope.append(n) and None))
        hooks.append(m.register_forward_hook(lambda _m, _i, _o: tracer.scope.pop() and None))  # None: keep output
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter, tracer:
            tracer.mark(x, 1, 1)
            tracer.ndim = x.dim()
            model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return Summary(
        params=sum(q.numel() for q in model.parameters()),
        trainable_params=sum(q.numel() for q in model.parameters() if q.requires_grad),
        macs=counter.get_total_flops() // 2,
        activation_bytes=sum(t.numel() * t.element_size() for i, t in tracer.seen.items() if i != id(x)),
        input_size=size,
        layers=tracer.layers,
        stages=_stages(tracer.trail),
    )


def _count(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"


def receptive_field(model: nn.Module, s: Summary) -> str:
    """The last stage's field in pixels, or the model's own sentence (``receptive_field_note``) where attention
    makes a traced number misleading: a ViT's field is the whole image after its first attention layer."""
    note = getattr(model, "receptive_field_note", None)
    if note:
        return note
    return f"{s.stages[-1].receptive_field} px" if s.stages else ""


def model_table(pattern: str | None = None) -> str:
    """The markdown table of every registered image model: parameters at 1000 classes, MACs at its input size."""
    from zoo.registry import entry, list_models

    rows = ["| model | family | year | params (1000 classes) | MACs | input | receptive field | torchvision |",
            "|---|---|---|---|---|---|---|---|"]
    for name in list_models(pattern):
        e = entry(name)
        if e.kind != "image":
            continue
        with torch.device("meta"):  # shapes only: no init cost, no memory, no arithmetic
            model = e.builder(num_classes=1000, in_channels=e.input_size[0])
        s = summary(model, e.input_size)
        twin = f"`{e.torchvision}`" if e.torchvision else ""
        rows.append(f"| `{name}` | {e.family} | {e.year} | {s.params:,} | {_count(s.macs)} | "
                    f"{'x'.join(map(str, e.input_size))} | {receptive_field(model, s)} | {twin} |")
    return "\n".join(rows)


def receptive_field_figure(s: Summary, title: str) -> Any:
    """Two panels: each stage's receptive field drawn as a square centred on the input frame (what one unit of the
    stage's last maps sees), and the field and the jump per stage against the input size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    h, w = s.input_size[-2:]
    fig, (frame, curve) = plt.subplots(1, 2, figsize=(10, 4.2))
    colours = plt.get_cmap("viridis")([i / max(1, len(s.stages) - 1) for i in range(len(s.stages))])
    frame.add_patch(Rectangle((0, 0), w, h, fill=True, color="0.92", zorder=0))
    frame.add_patch(Rectangle((0, 0), w, h, fill=False, color="black", lw=1.5, label=f"input {h}x{w}"))
    for st, colour in zip(s.stages, colours):
        r = st.receptive_field
        frame.add_patch(Rectangle(((w - r) / 2, (h - r) / 2), r, r, fill=False, color=colour, lw=1.2,
                                  label=f"{'x'.join(map(str, st.size))}: {r}"))
    reach = max([h, w] + [st.receptive_field for st in s.stages])
    frame.set_xlim(w / 2 - reach / 2 - 2, w / 2 + reach / 2 + 2)
    frame.set_ylim(h / 2 + reach / 2 + 2, h / 2 - reach / 2 - 2)
    frame.set_aspect("equal")
    frame.set_title("receptive field of one unit, centred", fontsize=9)
    frame.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="stage: field", title_fontsize=7)
    x = list(range(len(s.stages)))
    curve.plot(x, [st.receptive_field for st in s.stages], "o-", label="receptive field")
    curve.plot(x, [st.jump for st in s.stages], "s--", label="jump (stride so far)")
    curve.axhline(max(h, w), color="black", lw=0.8, ls=":", label=f"input size {max(h, w)}")
    curve.set_yscale("log", base=2)
    curve.set_xticks(x, ["x".join(map(str, st.size)) for st in s.stages], rotation=45, fontsize=7)
    curve.set_xlabel("stage (map size)")
    curve.set_ylabel("input pixels")
    curve.legend(fontsize=7)
    curve.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_receptive_field(name: str, out_dir: str = ".") -> str:
    """``python -m zoo.stats NAME --plot``: the stage table printed, ``receptive_field_NAME.png`` written."""
    from pathlib import Path

    import matplotlib.pyplot as plt

    from zoo.errors import ZooError
    from zoo.registry import entry

    e = entry(name)
    if e.kind != "image":
        raise ZooError(f"{name} is a {e.kind} model: receptive fields are drawn for image models")
    with torch.device("meta"):
        model = e.builder(num_classes=1000, in_channels=e.input_size[0])
    s = summary(model, e.input_size)
    print(s)
    path = Path(out_dir) / f"receptive_field_{name}.png"
    fig = receptive_field_figure(s, f"{name} at {'x'.join(map(str, e.input_size))}: receptive field per stage")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"plot: {path}")
    return str(path)


def main(argv: list[str] | None = None) -> None:
    """``python -m zoo.stats [PATTERN]``: the model table; ``python -m zoo.stats NAME --plot``: one model's fields."""
    from zoo import cli
    from zoo.errors import ZooError

    argv = sys.argv[1:] if argv is None else argv
    if "--plot" in argv:
        names = [a for a in argv if a != "--plot"]
        if len(names) != 1:
            cli.fail("usage: python -m zoo.stats NAME --plot  (one model name, e.g. resnet18)")
        try:
            plot_receptive_field(names[0])
        except ZooError as e:
            cli.fail(str(e))
        return
    print(model_table(argv[0] if argv else None))


if __name__ == "__main__":
    main()
