"""Seeing inside a trained network: ``python eval.py ckpt_path=CKPT visualize=KIND``.

Five pictures, each a PNG grid in the run directory and an image in its TensorBoard log:

- ``filters``: the first convolution's kernels, the edge and colour detectors of layer one.
- ``features``: the feature maps of one image at the end of every stage (every spatial resolution).
- ``gradcam``: Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
  Localization". A layer's maps weighted by the spatial mean of the class score's gradient, rectified:
  where in the image the evidence for the predicted class lies.
- ``deconv``: Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks". For chosen
  channels of a layer, the 9 images of a set that excite each channel most, and the strongest activation
  projected back to pixels. The deconvnet is a backward pass with one change: max-pooling's backward is
  already unpooling with the forward pass's switches and a convolution's backward is already the transposed
  filters, so only the ReLU differs: it rectifies the signal going down (``relu(g)``) and ignores the forward
  mask.
- ``saliency``: guided backpropagation (Springenberg et al. 2015, "Striving for Simplicity"): the class
  score's gradient with respect to the pixels, where every ReLU passes back only positive gradient, and only
  where its input was positive.

Both ReLU rules replace ``F.relu``/``torch.relu`` for the duration of one forward and backward pass (a
``TorchFunctionMode``), so they reach ``nn.ReLU`` modules and functional calls alike; other activations
(ReLU6, GELU) keep their plain gradient.

Layers are named by the network's module names (``conv2``, ``layer3``, ``features.8``). A module must run
once per forward pass and give feature maps (N x C x H x W) to be chosen; a shared activation module
(LeNet-5's ``act``) runs several times and cannot be.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from zoo.checkpoint import Facts, Record, load_record
from zoo.datamodules.augment import denormalize
from zoo.errors import ZooError

KINDS = ("filters", "features", "gradcam", "deconv", "saliency")
TOP = 9  # Zeiler & Fergus show the top 9 activations of each channel
# how many images each kind uses, from a folder or from the test split
NUM_IMAGES = {"features": 1, "gradcam": 16, "saliency": 16, "deconv": 500}


# -- the two ReLU rules ----------------------------------------------------------------------------


class _GuidedReLU(torch.autograd.Function):
    """ReLU whose backward passes gradient only where both the input and the gradient are positive."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = x.clamp(min=0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return g.clamp(min=0) * (y > 0)


class _DeconvReLU(torch.autograd.Function):
    """ReLU whose backward rectifies the signal coming down, whatever the forward input was (deconvnet)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        return g.clamp(min=0)


_RELUS = {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}


class _ReLURule(TorchFunctionMode):
    """Every ReLU call of a forward pass goes through ``rule`` (an autograd Function) instead."""

    def __init__(self, rule: type[torch.autograd.Function]) -> None:
        super().__init__()
        self.rule = rule

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if func in _RELUS:
            return self.rule.apply(args[0])
        return func(*args, **(kwargs or {}))


# -- layers by name ----------------------------------------------------------------------------------


@contextmanager
def _record(net: nn.Module, keep: str | None = None) -> Iterator[dict[str, Any]]:
    """Watch every module of a forward pass: ``calls`` (name -> count), ``order`` ((name, shape) at each exit)
    and, for the module named ``keep``, its ``output`` (still in the autograd graph)."""
    seen: dict[str, Any] = {"calls": {}, "order": [], "output": None}

    def hook(name: str) -> Any:
        def fn(_m: nn.Module, _i: Any, out: Any) -> None:
            seen["calls"][name] = seen["calls"].get(name, 0) + 1
            seen["order"].append((name, tuple(out.shape) if isinstance(out, torch.Tensor) else None))
            if name == keep:
                seen["output"] = out
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in net.named_modules() if n]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def feature_layers(net: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """The modules that can be visualised, in the order they finish: run once, output N x C x H x W, and not an
    identity (``model.norm=none`` leaves ``nn.Identity`` in the norm's place: the layer before it, again)."""
    with torch.no_grad(), _record(net) as seen:
        net(x[:1])
    modules = dict(net.named_modules())
    return [(n, s) for n, s in seen["order"] if s is not None and len(s) == 4 and seen["calls"][n] == 1
            and not isinstance(modules.get(n), nn.Identity)]


def check_layer(net: nn.Module, x: torch.Tensor, name: str) -> tuple[int, ...]:
    """The output shape of layer ``name``, or one error line naming the layers that can be chosen."""
    layers = dict(feature_layers(net, x))
    if name in layers:
        return layers[name]
    names = list(layers)
    shown = names if len(names) <= 40 else [n for n in names if n.count(".") <= 1] + ["..."]
    why = "no module of the network has that name"
    modules = dict(net.named_modules())
    if name in modules:
        with torch.no_grad(), _record(net, name) as seen:
            net(x[:1])
        count, out = seen["calls"].get(name, 0), seen["output"]
        if count > 1:
            why = f"it runs {count} times in one forward pass"
        elif not isinstance(out, torch.Tensor) or out.dim() != 4:
            why = f"its output is {tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}, " \
                  "not N x C x H x W feature maps"
    raise ZooError(f"visualize.layer={name}: {why}; valid: {', '.join(shown)}")


_RESAMPLE = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)  # fixed-size pools before a classifier: not a stage


def _stage_candidates(net: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """``feature_layers`` without 1x1 maps (pooled to a vector) and adaptive pools (a resampling, not a stage:
    VGG's at 32 pixels blows a 1x1 map up to 7x7)."""
    modules = dict(net.named_modules())
    return [(n, s) for n, s in feature_layers(net, x) if s[2] * s[3] > 1 and not isinstance(modules[n], _RESAMPLE)]


def default_layer(net: nn.Module, x: torch.Tensor) -> str:
    """The last stage with maps larger than 1x1: the deepest convolutional evidence (Grad-CAM's choice)."""
    layers = [n for n, _ in _stage_candidates(net, x)]
    if not layers:
        raise ZooError(f"{type(net).__name__} has no layer with N x C x H x W feature maps to visualise")
    return layers[-1]


def stage_layers(net: nn.Module, x: torch.Tensor) -> list[str]:
    """One layer per stage: for each run of equal spatial size (above 1x1), the shallowest module that finishes last."""
    groups: list[list[tuple[str, tuple[int, ...]]]] = []
    for name, shape in _stage_candidates(net, x):
        if groups and groups[-1][-1][1][2:] == shape[2:]:
            groups[-1].append((name, shape))
        else:
            groups.append([(name, shape)])
    return [min(reversed(g), key=lambda ns: ns[0].count("."))[0] for g in groups]


def _activation(net: nn.Module, x: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, the output of ``layer``), both still in the autograd graph."""
    with _record(net, layer) as seen:
        logits = net(x)
    return logits, seen["output"]


# -- the methods, on tensors -------------------------------------------------------------------------


def grad_cam(net: nn.Module, x: torch.Tensor, layer: str, target: torch.Tensor | None = None) -> torch.Tensor:
    """Grad-CAM maps (N x H x W, each scaled to [0, 1]) for class ``target`` (default: the prediction)."""
    x = x.detach().clone().requires_grad_(True)  # keeps the graph when the weights are frozen
    logits, act = _activation(net, x, layer)  # act: N x K x u x v maps
    target = logits.argmax(1) if target is None else target
    score = logits.gather(1, target.view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(score, act)
    alpha = grad.mean(dim=(2, 3), keepdim=True)  # N x K x 1 x 1: neuron importance weights
    cam = F.relu((alpha * act).sum(1, keepdim=True))  # N x 1 x u x v
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]  # N x H x W
    return (cam / cam.flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1)).detach()


def guided_backprop(net: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Guided-backpropagation saliency, N x C x H x W: d score / d pixels through guided ReLUs."""
    x = x.detach().clone().requires_grad_(True)
    with _ReLURule(_GuidedReLU):
        logits = net(x)
        target = logits.argmax(1) if target is None else target
        (grad,) = torch.autograd.grad(logits.gather(1, target.view(-1, 1)).sum(), x)
    return grad


def deconv_projection(net: nn.Module, x: torch.Tensor, layer: str, channel: int) -> tuple[torch.Tensor, float]:
    """Zeiler & Fergus's projection of the strongest activation of ``channel`` in ``layer`` for one image
    (1 x C x H x W): that one activation kept, every other set to zero, sent down the deconvnet to pixels."""
    x = x.detach().clone().requires_grad_(True)
    with _ReLURule(_DeconvReLU):
        _, act = _activation(net, x, layer)  # 1 x K x u x v
        fmap = act[0, channel]
        seed = torch.zeros_like(act)
        idx = int(fmap.argmax())
        value = fmap.flatten()[idx]
        seed[0, channel].view(-1)[idx] = value.detach()
        (pixels,) = torch.autograd.grad(act, x, grad_outputs=seed)
    return pixels[0].detach(), float(value.detach())


def top_activations(net: nn.Module, images: torch.Tensor, layer: str, k: int = TOP,
                    batch: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Each channel's strongest activation in every image (N x K), and the ``k`` best images per channel (K x k)."""
    best = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            _, act = _activation(net, images[start : start + batch], layer)
            best.append(act.flatten(2).amax(2))  # n x K
    peaks = torch.cat(best)
    return peaks, peaks.topk(min(k, len(images)), dim=0).indices.T


# -- pictures ----------------------------------------------------------------------------------------


def _signed(t: torch.Tensor) -> torch.Tensor:
    """Map values to [0, 1] with zero at grey: a weight's or a gradient's sign stays visible."""
    return (t / (2 * t.abs().max().clamp(min=1e-12)) + 0.5).clamp(0, 1)


def _unit(t: torch.Tensor) -> torch.Tensor:
    lo, hi = t.min(), t.max()
    return (t - lo) / (hi - lo).clamp(min=1e-12)


def _rgb(t: torch.Tensor) -> torch.Tensor:
    """C x H x W in [0, 1] -> 3 x H x W (grey repeated; more than 3 channels: the first three)."""
    return t.expand(3, *t.shape[1:]) if t.shape[0] == 1 else t[:3]


def _heat(cam: torch.Tensor) -> torch.Tensor:
    """H x W in [0, 1] -> 3 x H x W in the jet colour map."""
    import matplotlib

    rgba = matplotlib.colormaps["jet"](cam.cpu().numpy())
    return torch.from_numpy(rgba[..., :3]).permute(2, 0, 1).float()


def _figure(tiles: list[torch.Tensor], titles: list[str], cols: int, title: str) -> Any:
    """A matplotlib grid of image tiles (C x H x W in [0, 1]); a ``None`` tile leaves its cell empty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(1, min(cols, len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.6 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, tile, name in zip(axes.flat, tiles, titles):
        if tile is None:
            continue
        tile = tile.detach().float().cpu()
        if tile.shape[0] == 1:
            ax.imshow(tile[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(tile[:3].permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(name, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


# -- images in -------------------------------------------------------------------------------------


def read_images(paths: Sequence[Path], facts: Facts) -> torch.Tensor:
    """Image files as the checkpoint's data was fed (zoo.evaluate.load_image: channels, size, normalisation)."""
    from zoo.evaluate import load_image

    return torch.stack([load_image(path, facts) for path in paths])


def _test_images(record: Record, n: int, data_dir: str | None) -> torch.Tensor:
    """The first ``n`` (normalised) images of the checkpoint's test split, when no image is given."""
    dm = record.datamodule(data_dir)  # rebuilt from the record's names: the file chooses no code
    xs, total = [], 0
    for x, _ in dm.test_dataloader():
        xs.append(x.cpu())
        total += len(x)
        if total >= n:
            break
    return torch.cat(xs)[:n].float()


# -- the entry point ----------------------------------------------------------------------------------


def _channels(channels: int | Sequence[int] | None, available: int) -> list[int] | None:
    if channels is None:
        return None
    chosen = [int(channels)] if isinstance(channels, (int, str)) else [int(c) for c in channels]
    bad = [c for c in chosen if not 0 <= c < available]
    if bad:
        raise ZooError(f"visualize.channels={chosen}: the layer has channels 0 to {available - 1}; got {bad}")
    return chosen


def _first_conv(net: nn.Module, layer: str | None) -> tuple[str, nn.Module]:
    modules = dict(net.named_modules())
    if layer is not None:
        if not isinstance(modules.get(layer), nn.Conv2d):
            convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
            raise ZooError(f"visualize.layer={layer}: filters are drawn for a Conv2d; valid: {', '.join(convs)}")
        return layer, modules[layer]
    for name, m in modules.items():
        if isinstance(m, nn.Conv2d):
            return name, m
    raise ZooError(f"{type(net).__name__} has no Conv2d layer: its filters cannot be drawn")


def _class_namer(facts: dict[str, Any]) -> Any:
    names = facts.get("class_names") or []
    return lambda i: names[i] if i < len(names) else str(i)


def filters_figure(net: nn.Module, layer: str | None = None) -> Any:
    """The kernels of the first Conv2d (or of ``layer``), each scaled so that zero is grey; RGB when it reads RGB."""
    name, conv = _first_conv(net, layer)
    w = conv.weight.detach().float()[:64]  # out x in x k x k
    tiles = [_signed(f if f.shape[0] == 3 else f.mean(0, keepdim=True)) for f in w]
    return _figure(tiles, [str(i) for i in range(len(tiles))], 8,
                   f"{name}: {conv.out_channels} filters {tuple(conv.kernel_size)}, zero is grey")


def features_figure(net: nn.Module, images: torch.Tensor, shown: torch.Tensor, layers: list[str],
                    channels: int | Sequence[int] | None = None, cols: int = 8) -> Any:
    """One row per layer for the first image: the image, then the chosen (default: the most active) maps."""
    x = images[:1]
    rows: list[tuple[list[Any], list[str]]] = []
    for name in layers:
        with torch.no_grad():
            _, act = _activation(net, x, name)  # 1 x K x h x w
        chosen = _channels(channels, act.shape[1])
        if chosen is None:
            chosen = act[0].flatten(1).mean(1).topk(min(cols - 1, act.shape[1])).indices.tolist()
        rows.append(([_rgb(shown[0])] + [_unit(act[0, c]).unsqueeze(0) for c in chosen],
                     ["input"] + [f"{name} ch{c}" for c in chosen]))
    width = max(len(tiles) for tiles, _ in rows)
    tiles = [t for row, _ in rows for t in row + [None] * (width - len(row))]
    titles = [t for row, names in rows for t in names + [""] * (width - len(row))]
    return _figure(tiles, titles, width, "feature maps per stage (each map scaled to its own range)")


def gradcam_figure(net: nn.Module, images: torch.Tensor, shown: torch.Tensor, layer: str, cls: Any) -> Any:
    """Each image beside its Grad-CAM heat map for the predicted class."""
    with torch.no_grad():
        pred = net(images).argmax(1)
    cams = grad_cam(net, images, layer, pred)
    tiles, titles = [], []
    for img, cam, p in zip(shown, cams, pred.tolist()):
        tiles += [_rgb(img), 0.5 * _rgb(img) + 0.5 * _heat(cam)]
        titles += ["image", f"{cls(p)} @ {layer}"]
    return _figure(tiles, titles, 8, f"Grad-CAM of the predicted class at {layer}")


def saliency_figure(net: nn.Module, images: torch.Tensor, shown: torch.Tensor, cls: Any) -> Any:
    """Each image beside its guided-backpropagation saliency for the predicted class."""
    with torch.no_grad():
        pred = net(images).argmax(1)
    grads = guided_backprop(net, images, pred)
    tiles, titles = [], []
    for img, g, p in zip(shown, grads, pred.tolist()):
        tiles += [_rgb(img), _signed(g)]
        titles += ["image", f"guided bp: {cls(p)}"]
    return _figure(tiles, titles, 8, "guided-backpropagation saliency of the predicted class (zero is grey)")


def deconv_figure(net: nn.Module, images: torch.Tensor, shown: torch.Tensor, layer: str,
                  channels: int | Sequence[int] | None = None) -> Any:
    """Per channel two rows: the top-9 projections to pixel space, and below them the images they come from."""
    peaks, top = top_activations(net, images, layer)
    chosen = _channels(channels, peaks.shape[1])
    if chosen is None:  # the four channels whose top activations are strongest
        strength = peaks.topk(top.shape[1], dim=0).values.mean(0)
        chosen = sorted(strength.topk(min(4, peaks.shape[1])).indices.tolist())
    tiles: list[Any] = []
    titles: list[str] = []
    for c in chosen:
        idx = top[c].tolist()
        pad = [None] * (TOP - len(idx))
        tiles += [_rgb(_signed(deconv_projection(net, images[i : i + 1], layer, c)[0])) for i in idx] + pad
        tiles += [_rgb(shown[i]) for i in idx] + pad
        titles += [f"ch{c} {peaks[i, c]:.2f}" for i in idx] + [""] * (len(pad) + TOP)
    return _figure(tiles, titles, TOP, f"deconvnet at {layer}: top {TOP} images per channel, projected to pixels")


def figure_for(kind: str, net: nn.Module, images: torch.Tensor, facts: dict[str, Any], layer: str | None = None,
               channels: int | Sequence[int] | None = None) -> Any:
    """The matplotlib figure of one kind of picture for normalised ``images`` (N x C x H x W)."""
    if kind == "filters":
        return filters_figure(net, layer)
    if kind not in KINDS:
        raise ZooError(f"visualize={kind!r}: valid: {', '.join(KINDS)}")
    if layer is not None:
        check_layer(net, images, str(layer))
    shown = denormalize(images, facts["mean"], facts["std"]).clamp(0, 1)  # what the images look like
    if kind == "features":
        layers = [str(layer)] if layer is not None else stage_layers(net, images[:1])
        return features_figure(net, images, shown, layers, channels)
    if kind == "saliency":
        return saliency_figure(net, images, shown, _class_namer(facts))
    layer = str(layer) if layer is not None else default_layer(net, images)
    if kind == "gradcam":
        return gradcam_figure(net, images, shown, layer, _class_namer(facts))
    return deconv_figure(net, images, shown, layer, channels)


def visualize(ckpt_path: str | Path, kind: str, image: str | Path | None = None, layer: str | None = None,
              channels: int | Sequence[int] | None = None, run_dir: str | Path = ".",
              data_dir: str | None = None) -> Path:
    """Draw one kind of picture of a checkpoint's network; write ``run_dir/visualize_KIND.png`` and the same
    image to ``run_dir/tensorboard``. Images: ``image`` (a file or a folder), else the checkpoint's test split."""
    from zoo.evaluate import network

    if kind not in KINDS:
        raise ZooError(f"visualize={kind!r}: valid: {', '.join(KINDS)}")
    ckpt, record = load_record(ckpt_path)
    facts = record.facts
    if len(facts.input_shape) != 3:
        raise ZooError(f"visualize= draws image networks; {ckpt_path} was trained on {facts.name!r} "
                       f"(input {list(facts.input_shape)})")
    net = network(ckpt, record).float()
    for p in net.parameters():
        p.requires_grad_(False)  # gradients flow to activations and pixels only
    if kind == "filters":  # weights only: no images to read
        fig = filters_figure(net, layer)
    else:
        n = NUM_IMAGES[kind]
        if image is not None:
            from zoo.evaluate import image_files

            images = read_images(image_files(image, "visualize.image")[:n], facts)
        else:
            images = _test_images(record, n, data_dir)
        fig = figure_for(kind, net, images, facts.to_dict(), layer, channels)

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    png = run_dir / f"visualize_{kind}.png"
    fig.savefig(png, dpi=100)
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(run_dir / "tensorboard")) as writer:
        writer.add_figure(f"visualize/{kind}", fig)  # closes the figure
    print(f"{kind}: {png}", flush=True)
    return png
