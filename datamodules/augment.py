"""Batched augmentations of (N, C, H, W) image tensors, on whatever device the batch is on.

Every operation draws its random parameters per sample (one flip decision, one crop offset, one
rotation angle per image) in a handful of tensor operations over the whole batch, so the data never
leaves the device and there is no per-image Python loop. torchvision's v2 transforms draw one set of
parameters per call, which is why they run per sample in DataLoader workers.

Pixel-space operations take float images in [0, 1]; :func:`normalize` comes after them, and the
erasing operations after that (their fill value 0 is then the dataset mean, as in the papers).
:class:`Augment` chains them from a preset (``none``, ``standard``, ``strong``) and individual knobs.

Why not kornia: ``benchmarks/data_throughput.py`` times ``kornia.augmentation`` on the same batches
(crop with padding + flip, CPU); the hand-written ops below are 2-4x faster there, and
colour jitter here is a per-sample 3x3 colour matrix (hue as a rotation in YIQ space) instead of an
RGB -> HSV -> RGB round trip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F

from zoo.errors import ZooError


def _uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device) * (high - low) + low


def _chance(n: int, p: float, device: torch.device) -> torch.Tensor:
    """A (n,) bool mask, each True with probability ``p``."""
    return torch.rand(n, device=device) < p


# -- geometry ---------------------------------------------------------------------------------
def hflip(x: torch.Tensor, p: float = 0.5, inplace: bool = False) -> torch.Tensor:
    """Mirror each image left-right with probability ``p`` (only the chosen subset is copied and flipped)."""
    chosen = _chance(len(x), p, x.device).nonzero().squeeze(1)
    if not inplace:
        x = x.clone()
    x[chosen] = x[chosen].flip(-1)
    return x


def random_crop(x: torch.Tensor, padding: int, size: int | tuple[int, int] | None = None,
                padding_mode: str = "constant") -> torch.Tensor:
    """Pad by ``padding`` on every side, then cut a ``size`` window (default: the input size) at a
    random offset per image: one indexing of the (strided, uncopied) view of all windows, any dtype."""
    n, c, h, w = x.shape
    oh, ow = (size, size) if isinstance(size, int) else (size or (h, w))
    if padding:
        if padding_mode == "constant" or x.dtype == torch.uint8:
            x = F.pad(x, (padding,) * 4)
        else:
            x = F.pad(x, (padding,) * 4, mode=padding_mode)
    hp, wp = x.shape[-2:]
    if oh > hp or ow > wp:
        raise ZooError(f"crop size {(oh, ow)} is larger than the padded image {(hp, wp)}")
    top = torch.randint(0, hp - oh + 1, (n,), device=x.device)
    left = torch.randint(0, wp - ow + 1, (n,), device=x.device)
    windows = x.unfold(2, oh, 1).unfold(3, ow, 1)  # N x C x (hp - oh + 1) x (wp - ow + 1) x oh x ow, a view
    return windows.permute(0, 2, 3, 1, 4, 5)[torch.arange(n, device=x.device), top, left]  # N x C x oh x ow


def _sample(x: torch.Tensor, theta: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Resample each image through its own affine map ``theta`` (N, 2, 3), output coords -> input coords."""
    n, c, h, w = x.shape
    oh, ow = size or (h, w)
    grid = F.affine_grid(theta.to(x.dtype), [n, c, oh, ow], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_resized_crop(x: torch.Tensor, size: int | tuple[int, int] | None = None,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Inception-style crop: a box of random area fraction ``scale`` and aspect ``ratio`` per image,
    resized (bilinear) to ``size``. Boxes too large for the image are clipped to it."""
    n, device = len(x), x.device
    oh, ow = (size, size) if isinstance(size, int) else (size or tuple(x.shape[-2:]))
    area = _uniform(n, *scale, device)
    log_r = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), device)
    aspect = torch.exp(log_r)
    bw = torch.sqrt(area * aspect).clamp(max=1.0)  # box width / image width
    bh = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (torch.rand(n, device=device) * 2 - 1) * (1 - bw)  # box centre in [-1, 1] coords, box inside
    cy = (torch.rand(n, device=device) * 2 - 1) * (1 - bh)
    zero = torch.zeros(n, device=device)
    theta = torch.stack([torch.stack([bw, zero, cx], 1), torch.stack([zero, bh, cy], 1)], 1)
    return _sample(x, theta, (oh, ow))


def affine(x: torch.Tensor, angle: torch.Tensor, translate: torch.Tensor, scale: torch.Tensor,
           shear: torch.Tensor) -> torch.Tensor:
    """Per-image affine map about the centre, with the conventions of torchvision's ``v2.functional.affine``
    (a test holds them equal): rotation by ``angle`` degrees, shear of ``shear`` degrees along x, zoom
    ``scale``, shift ``translate`` (N, 2) in pixels (x, y); bilinear, zero fill."""
    n, _, h, w = x.shape
    a = torch.deg2rad(-angle.float())  # torchvision's sign
    sh = torch.tan(torch.deg2rad(-shear.float()))
    s = scale.float()
    cos, sin = torch.cos(a), torch.sin(a)
    # forward map in [-1, 1] coords (y down), A = R(a) @ Shear_x(sh) @ diag(s, s); grid_sample wants
    # the inverse, output -> input
    fwd = torch.stack([torch.stack([cos * s, (cos * sh + sin) * s], 1),
                       torch.stack([-sin * s, (-sin * sh + cos) * s], 1)], 1)  # N x 2 x 2
    inv = torch.linalg.inv(fwd)
    t = translate.float() * torch.tensor([2 / w, 2 / h], device=x.device)  # pixels -> [-1, 1] units
    shift = -(inv @ t.unsqueeze(-1))  # N x 2 x 1
    return _sample(x, torch.cat([inv, shift], 2))


def random_affine(x: torch.Tensor, degrees: float = 0.0, translate: float = 0.0, scale: float = 0.0,
                  shear: float = 0.0) -> torch.Tensor:
    """Small per-image rotation (+-``degrees``), shift (+-``translate`` of the size), zoom
    (1 +- ``scale``) and shear (+-``shear`` degrees), bilinear, zero fill: the digits' augmentation."""
    n, device = len(x), x.device
    h, w = x.shape[-2:]
    shift = torch.stack([_uniform(n, -translate * w, translate * w, device),
                         _uniform(n, -translate * h, translate * h, device)], 1)
    return affine(x, _uniform(n, -degrees, degrees, device), shift, _uniform(n, 1 - scale, 1 + scale, device),
                  _uniform(n, -shear, shear, device))


# -- colour and noise -------------------------------------------------------------------------
_LUMA = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def color_jitter(x: torch.Tensor, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0,
                 hue: float = 0.0) -> torch.Tensor:
    """Per-image brightness, contrast and saturation factors in [1 - v, 1 + v] and a hue shift in
    [-hue, hue] of a full turn, applied in that fixed order to [0, 1] images, clamped to [0, 1].
    Saturation and hue act on RGB only; hue rotates the chroma plane of YIQ (a linear map)."""
    n, device = len(x), x.device
    view = (-1, 1, 1, 1)
    if brightness:
        x = (x * _uniform(n, 1 - brightness, 1 + brightness, device).view(view)).clamp_(0, 1)
    if contrast:
        m = _gray(x).mean((1, 2, 3), keepdim=True)
        x = ((x - m) * _uniform(n, 1 - contrast, 1 + contrast, device).view(view) + m).clamp_(0, 1)
    if x.shape[1] == 3 and saturation:
        g = _gray(x)
        x = ((x - g) * _uniform(n, 1 - saturation, 1 + saturation, device).view(view) + g).clamp_(0, 1)
    if x.shape[1] == 3 and hue:
        t = _uniform(n, -hue, hue, device) * 2 * math.pi
        cos, sin = torch.cos(t), torch.sin(t)
        one, zero = torch.ones_like(t), torch.zeros_like(t)
        rot = torch.stack([torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1),
                           torch.stack([zero, sin, cos], 1)], 1)  # N x 3 x 3, rotates I/Q
        to_yiq = _RGB_TO_YIQ.to(device, x.dtype)
        m = torch.linalg.inv(to_yiq) @ rot.to(x.dtype) @ to_yiq
        x = torch.einsum("nij,njhw->nihw", m, x).clamp_(0, 1)
    return x


def gaussian_noise(x: torch.Tensor, std: float) -> torch.Tensor:
    """Add N(0, ``std``^2) noise to every pixel (no clamping, so the variance adds exactly)."""
    return x + torch.randn_like(x) * std


def _per_channel(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """``values`` as a (C, 1, 1) tensor: it broadcasts over (C, H, W) images and (N, C, H, W) batches alike."""
    return torch.as_tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Per-channel ``(x - mean) / std`` of float images in [0, 1], (C, H, W) or (N, C, H, W).

    The one normalisation of the project: the datamodules, prediction and the figures all go through
    this function, :func:`normalize_uint8` and :func:`denormalize`.
    """
    return (x - _per_channel(mean, x)) / _per_channel(std, x)


def normalize_uint8(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 -> float in [0, 1] -> :func:`normalize`: the evaluation transform of every image dataset."""
    return normalize(x.float().div_(255), mean, std)


def denormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """The inverse of :func:`normalize` (to show a batch or an image as it was before normalisation)."""
    return x * _per_channel(std, x) + _per_channel(mean, x)


# -- erasing ----------------------------------------------------------------------------------
def _box_mask(h: int, w: int, top: torch.Tensor, left: torch.Tensor, bh: torch.Tensor,
              bw: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) bool masks, True inside each image's box [top, top + bh) x [left, left + bw)."""
    rows = torch.arange(h, device=top.device).view(1, h, 1)
    cols = torch.arange(w, device=top.device).view(1, 1, w)
    top, left, bh, bw = (t.view(-1, 1, 1) for t in (top, left, bh, bw))
    return ((rows >= top) & (rows < top + bh) & (cols >= left) & (cols < left + bw)).unsqueeze(1)


def cutout(x: torch.Tensor, size: int, p: float = 1.0, value: float = 0.0) -> torch.Tensor:
    """DeVries & Taylor (2017): a ``size`` x ``size`` square, centred anywhere in the image (so it may
    be cut off by the border), set to ``value``, with probability ``p`` per image."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), device=x.device)
    cx = torch.randint(0, w, (n,), device=x.device)
    side = torch.full((n,), size, device=x.device)
    mask = _box_mask(h, w, cy - size // 2, cx - size // 2, side, side) & _chance(n, p, x.device).view(-1, 1, 1, 1)
    return x.masked_fill(mask, value)


def random_erasing(x: torch.Tensor, p: float = 0.5, scale: tuple[float, float] = (0.02, 0.33),
                   ratio: tuple[float, float] = (0.3, 3.3), value: float = 0.0) -> torch.Tensor:
    """Zhong et al. (2017): with probability ``p``, a box of area fraction ``scale`` and aspect ``ratio``,
    inside the image, set to ``value``."""
    n, _, h, w = x.shape
    device = x.device
    area = _uniform(n, *scale, device) * h * w
    aspect = torch.exp(_uniform(n, math.log(ratio[0]), math.log(ratio[1]), device))
    bh = torch.sqrt(area * aspect).round().clamp(1, h).long()
    bw = torch.sqrt(area / aspect).round().clamp(1, w).long()
    top = (torch.rand(n, device=device) * (h - bh + 1)).long()
    left = (torch.rand(n, device=device) * (w - bw + 1)).long()
    mask = _box_mask(h, w, top, left, bh, bw) & _chance(n, p, device).view(-1, 1, 1, 1)
    return x.masked_fill(mask, value)


# -- mixing (images and targets) --------------------------------------------------------------
def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return F.one_hot(y, num_classes).float() if y.ndim == 1 else y.float()


def _beta(alpha: float, n: int, device: torch.device) -> torch.Tensor:
    a = torch.tensor(float(alpha))
    return torch.distributions.Beta(a, a).sample((n,)).to(device)


def mixup(x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Zhang et al. (2018): blend each image with a random partner of the batch, lambda ~ Beta(alpha,
    alpha) per image; returns soft targets (N, num_classes) that sum to 1."""
    lam = _beta(alpha, len(x), x.device)
    perm = torch.randperm(len(x), device=x.device)
    t = one_hot(y, num_classes)
    x = lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x[perm]
    return x, lam[:, None] * t + (1 - lam[:, None]) * t[perm]


def cutmix(x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Yun et al. (2019): paste a box of a random partner image, side sqrt(1 - lambda) of the image
    (clipped at the border), lambda ~ Beta(alpha, alpha) per image; targets weighted by pasted area."""
    n, _, h, w = x.shape
    lam = _beta(alpha, n, x.device)
    cut = torch.sqrt(1 - lam)
    bh, bw = (cut * h).long(), (cut * w).long()
    cy = torch.randint(0, h, (n,), device=x.device)
    cx = torch.randint(0, w, (n,), device=x.device)
    top, left = (cy - bh // 2).clamp(0, h), (cx - bw // 2).clamp(0, w)
    bottom, right = (cy + bh // 2).clamp(0, h), (cx + bw // 2).clamp(0, w)
    mask = _box_mask(h, w, top, left, bottom - top, right - left)  # N x 1 x H x W
    perm = torch.randperm(n, device=x.device)
    x = torch.where(mask, x[perm], x)
    kept = 1 - mask.flatten(1).float().mean(1)  # the area each image keeps of itself
    t = one_hot(y, num_classes)
    return x, kept[:, None] * t + (1 - kept[:, None]) * t[perm]


# -- presets and the pipeline -----------------------------------------------------------------
@dataclass(frozen=True)
class Knobs:
    """Every augmentation setting; 0 / None turns an operation off."""

    crop_padding: int = 0  # random crop after zero padding on every side
    resized_crop: tuple[float, float] | None = None  # random resized crop: area fraction range
    hflip: float = 0.0  # probability
    rotate: float = 0.0  # degrees, +-
    translate: float = 0.0  # fraction of the size, +-
    scale: float = 0.0  # zoom 1 +- scale
    shear: float = 0.0  # degrees, +-
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0  # fraction of a turn, +- (torchvision: at most 0.5)
    noise: float = 0.0  # std of Gaussian noise in [0, 1] pixel units
    cutout: int = 0  # side of the square, in pixels
    erasing: float = 0.0  # probability of random erasing
    mixup: float = 0.0  # Beta alpha
    cutmix: float = 0.0  # Beta alpha

    def __post_init__(self) -> None:
        """Each knob is a number >= 0 (probabilities at most 1), so a bad override is one line, not a
        traceback from deep inside the first augmented batch."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "resized_crop":
                ok = value is None or (len(value) == 2 and 0 < value[0] <= value[1] <= 1)
                if not ok:
                    raise ZooError(f"data.aug.resized_crop must be [low, high] with 0 < low <= high <= 1; got {value}")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise ZooError(f"data.aug.{f.name} must be a number >= 0; got {value!r}")
            if f.name in ("hflip", "erasing") and value > 1:
                raise ZooError(f"data.aug.{f.name} is a probability, at most 1; got {value!r}")


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # natural images (CIFAR, Fashion-MNIST, ImageFolder): crop + flip, then colour and erasing
    "objects": {
        "none": {},
        "standard": {"crop_padding": 4, "hflip": 0.5},
        "strong": {"crop_padding": 4, "hflip": 0.5, "brightness": 0.2, "contrast": 0.2, "saturation": 0.2,
                   "hue": 0.05, "erasing": 0.5},
    },
    # digits and characters (MNIST, KMNIST, SVHN, sklearn digits): no flips, small affine maps
    "digits": {
        "none": {},
        "standard": {"rotate": 10.0, "translate": 0.1, "scale": 0.1},
        "strong": {"rotate": 15.0, "translate": 0.1, "scale": 0.15, "shear": 10.0, "brightness": 0.2,
                   "contrast": 0.2, "noise": 0.05, "erasing": 0.5},
    },
}


def make_knobs(preset: str | None = "none", kind: str = "objects", overrides: dict[str, Any] | None = None) -> Knobs:
    """The preset's settings for this kind of data, with ``overrides`` (non-None values) on top."""
    preset = preset or "none"
    if kind not in PRESETS:
        raise ZooError(f"unknown augmentation kind {kind!r}; known: {', '.join(PRESETS)}")
    if preset not in PRESETS[kind]:
        raise ZooError(f"unknown data.augment preset {preset!r}; valid: {', '.join(PRESETS[kind])}")
    names = {f.name for f in fields(Knobs)}
    extra = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(extra) - names)
    if unknown:
        raise ZooError(f"unknown augmentation knob(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    if extra.get("resized_crop") is not None:
        extra["resized_crop"] = tuple(float(v) for v in extra["resized_crop"])
    return replace(Knobs(**PRESETS[kind][preset]), **extra)


class Augment:
    """The training pipeline of one dataset: uint8 batch -> float [0, 1] -> geometry -> colour ->
    noise -> normalise -> erasing; and, on (images, labels), mixup or cutmix (one of them per batch,
    chosen by a coin when both are on).

    ``Augment(mean, std, num_classes)`` with no knobs is the deterministic evaluation transform.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], num_classes: int = 0,
                 knobs: Knobs | None = None) -> None:
        self.mean, self.std = tuple(mean), tuple(std)
        self.num_classes = num_classes
        self.k = knobs or Knobs()
        if (self.k.mixup or self.k.cutmix) and num_classes < 2:
            raise ZooError("mixup and cutmix need a classification dataset (num_classes >= 2)")

    @property
    def is_random(self) -> bool:
        return self.k != Knobs()

    @property
    def mixes(self) -> bool:
        return bool(self.k.mixup or self.k.cutmix)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """Augment and normalise a batch of uint8 (N, C, H, W) images."""
        k = self.k
        given = x
        if k.crop_padding:  # on uint8: a quarter of the bytes to move
            x = random_crop(x, k.crop_padding)
        if k.hflip:
            x = hflip(x, k.hflip, inplace=x is not given)
        colour = k.brightness or k.contrast or k.saturation or k.hue
        if not (k.resized_crop or k.rotate or k.translate or k.scale or k.shear or colour or k.noise):
            x = normalize_uint8(x, self.mean, self.std) if x.dtype == torch.uint8 else normalize(
                x.float(), self.mean, self.std)
        else:  # pixel-space operations on [0, 1] floats
            x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
            if k.resized_crop:
                x = random_resized_crop(x, scale=k.resized_crop)
            if k.rotate or k.translate or k.scale or k.shear:
                x = random_affine(x, k.rotate, k.translate, k.scale, k.shear)
            if colour:
                x = color_jitter(x, k.brightness, k.contrast, k.saturation, k.hue)
            if k.noise:
                x = gaussian_noise(x, k.noise)
            x = normalize(x, self.mean, self.std)
        if k.cutout:
            x = cutout(x, k.cutout)
        if k.erasing:
            x = random_erasing(x, k.erasing)
        return x

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixup or cutmix on a transformed batch; soft (N, num_classes) targets."""
        k = self.k
        use_cutmix = k.cutmix and (not k.mixup or bool(torch.rand(()) < 0.5))
        if use_cutmix:
            return cutmix(x, y, self.num_classes, k.cutmix)
        if k.mixup:
            return mixup(x, y, self.num_classes, k.mixup)
        return x, y

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Any:
        x = self.images(x)
        return x if y is None else self.mix(x, y)
