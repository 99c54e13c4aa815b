"""Each batched augmentation does what it says, per sample, checked against direct computations and torchvision."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from zoo.datamodules import augment as A
from zoo.errors import ZooError


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def images(n: int = 16, c: int = 3, h: int = 12, w: int = 12) -> torch.Tensor:
    return torch.rand(n, c, h, w)


def test_hflip_is_its_own_inverse_on_the_flipped_subset() -> None:
    x = images(64)
    out = A.hflip(x, p=0.5)
    flipped = (out != x).flatten(1).any(1)
    assert 10 < int(flipped.sum()) < 54  # about half, per sample
    assert torch.equal(out[flipped].flip(-1), x[flipped])
    assert torch.equal(out[~flipped], x[~flipped])
    assert torch.equal(A.hflip(x, p=1.0), x.flip(-1))
    assert torch.equal(A.hflip(x, p=0.0), x)


def test_random_crop_keeps_shape_and_is_a_shifted_window_of_the_padded_image() -> None:
    x = torch.randint(0, 256, (8, 3, 10, 10), dtype=torch.uint8)
    out = A.random_crop(x, padding=2)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = set()
    for i in range(len(x)):
        hits = [(t, l) for t in range(5) for l in range(5) if torch.equal(padded[i, :, t : t + 10, l : l + 10], out[i])]
        assert hits, f"sample {i} is not a window of its padded image"
        offsets.add(hits[0])
    assert len(offsets) > 1  # offsets drawn per sample
    assert torch.equal(A.random_crop(x, padding=0), x)
    assert A.random_crop(x, padding=2, size=8).shape == (8, 3, 8, 8)


def test_random_resized_crop_full_box_is_identity_and_size_is_honoured() -> None:
    x = images(4)
    same = A.random_resized_crop(x, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.allclose(same, x, atol=1e-5)
    out = A.random_resized_crop(x, size=(7, 9), scale=(0.2, 0.5))
    assert out.shape == (4, 3, 7, 9)
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("angle,shift,scale,shear", [(30.0, (2.0, -1.0), 1.0, 0.0), (-12.0, (0.0, 0.0), 1.2, 10.0),
                                                     (90.0, (0.0, 0.0), 0.9, -5.0)])
def test_affine_matches_torchvision_functional_affine(angle: float, shift: tuple[float, float], scale: float,
                                                      shear: float) -> None:
    x = torch.zeros(1, 2, 16, 16)
    x[..., 4:11, 5:12] = torch.rand(2, 7, 7)
    ours = A.affine(x, torch.tensor([angle]), torch.tensor([shift]), torch.tensor([scale]), torch.tensor([shear]))
    ref = TF.affine(x[0], angle=angle, translate=list(shift), scale=scale, shear=[shear, 0.0],
                    interpolation=TF.InterpolationMode.BILINEAR)
    assert torch.allclose(ours[0], ref, atol=1e-5)


def test_random_affine_zero_range_is_identity_and_draws_per_sample() -> None:
    x = images(8, c=1)
    assert torch.allclose(A.random_affine(x), x, atol=1e-5)
    out = A.random_affine(x, degrees=15, translate=0.1, scale=0.1)
    assert out.shape == x.shape
    assert len({round(float((o - i).abs().sum()), 3) for o, i in zip(out, x)}) == len(x)


def test_brightness_scales_each_image_by_a_factor_in_range() -> None:
    x = images(32) * 0.5  # no clamping at 1 + 0.3
    out = A.color_jitter(x, brightness=0.3)
    factor = out.flatten(1).sum(1) / x.flatten(1).sum(1)
    assert torch.allclose(out, x * factor.view(-1, 1, 1, 1), atol=1e-5)
    assert bool(((factor >= 0.7 - 1e-5) & (factor <= 1.3 + 1e-5)).all()) and factor.std() > 0.05


def test_contrast_keeps_the_mean_and_scales_the_spread() -> None:
    x = 0.4 + 0.2 * images(16)  # stays in [0, 1] for factors up to 1.5
    out = A.color_jitter(x, contrast=0.5)
    gray = lambda t: A._gray(t).mean((1, 2, 3))  # noqa: E731
    assert torch.allclose(gray(out), gray(x), atol=1e-5)
    ratio = (out - out.mean((1, 2, 3), keepdim=True)).flatten(1).norm(dim=1) / \
        (x - x.mean((1, 2, 3), keepdim=True)).flatten(1).norm(dim=1)
    assert bool(((ratio > 0.5 - 1e-4) & (ratio < 1.5 + 1e-4)).all()) and ratio.std() > 0.05


def test_saturation_and_hue_leave_gray_images_alone_and_change_colour_ones() -> None:
    gray = images(8, c=1).expand(8, 3, 12, 12).contiguous()
    assert torch.allclose(A.color_jitter(gray, saturation=0.5, hue=0.3), gray, atol=1e-5)
    colour = 0.25 + 0.5 * images(8)
    hued = A.color_jitter(colour, hue=0.3)
    assert not torch.allclose(hued, colour, atol=1e-3)
    luma = torch.tensor(A._LUMA).view(1, 3, 1, 1)
    # a hue rotation in YIQ keeps the luma of every pixel (where nothing was clamped)
    inside = ((hued > 0) & (hued < 1)).all(1, keepdim=True)
    assert torch.allclose(((hued * luma).sum(1, keepdim=True))[inside], ((colour * luma).sum(1, keepdim=True))[inside],
                          atol=1e-4)
    zero = A.color_jitter(colour, saturation=1.0)  # factors in [0, 2]; 0 would be fully gray
    assert zero.shape == colour.shape


def test_gaussian_noise_adds_the_configured_variance() -> None:
    x = images(64, h=16, w=16)
    out = A.gaussian_noise(x, std=0.1)
    assert abs(float((out - x).std()) - 0.1) < 0.003
    assert abs(float(out.var()) - float(x.var() + 0.01)) < 0.002


def test_cutout_zeroes_one_square_per_image_at_most() -> None:
    x = images(32, h=16, w=16) + 1  # no zeros before
    out = A.cutout(x, size=6)
    erased = (out == 0).all(1)  # N x H x W
    counts = erased.flatten(1).sum(1)
    assert bool((counts <= 36).all()) and bool((counts > 0).all())
    for e in erased:  # the erased pixels form one axis-aligned box
        rows, cols = e.any(1).nonzero(), e.any(0).nonzero()
        assert int(e.sum()) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert torch.equal(out[~erased.unsqueeze(1).expand_as(out)], x[~erased.unsqueeze(1).expand_as(x)])


def test_random_erasing_probability_and_area() -> None:
    x = images(200, h=16, w=16) + 1
    out = A.random_erasing(x, p=0.5, scale=(0.1, 0.2))
    area = (out == 0).all(1).flatten(1).float().mean(1)
    hit = area > 0
    assert 70 < int(hit.sum()) < 130
    assert bool((area[hit] > 0.05).all()) and bool((area[hit] < 0.3).all())
    assert torch.equal(A.random_erasing(x, p=0.0), x)


def _labelled_constants(n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is the constant i with label i, so a mixed image's mean is the target-weighted label."""
    y = torch.arange(n)
    return y.float().view(-1, 1, 1, 1).expand(n, 3, 8, 8).contiguous(), y


@pytest.mark.parametrize("mix", [A.mixup, A.cutmix])
def test_mixing_gives_soft_targets_that_sum_to_one_and_match_the_pixels(mix) -> None:
    x, y = _labelled_constants()
    out, t = mix(x, y, num_classes=10, alpha=1.0)
    assert t.shape == (10, 10) and t.dtype == torch.float32
    assert torch.allclose(t.sum(1), torch.ones(10))
    assert bool((t >= 0).all())
    expected = t @ torch.arange(10.0)  # each image's mean = sum_k weight_k * k
    assert torch.allclose(out.mean((1, 2, 3)), expected, atol=1e-4)
    assert not torch.allclose(t, torch.eye(10))


def test_cutmix_pastes_a_box_from_one_partner() -> None:
    x, y = _labelled_constants()
    out, t = A.cutmix(x, y, num_classes=10, alpha=1.0)
    for i in range(10):
        values = out[i, 0].unique()
        assert len(values) <= 2 and float(i) in values.tolist() or t[i, i] == 0


def test_presets_and_knobs() -> None:
    assert A.make_knobs("none") == A.Knobs()
    std = A.make_knobs("standard", "objects")
    assert std.crop_padding == 4 and std.hflip == 0.5
    assert A.make_knobs("standard", "digits").hflip == 0  # never mirror digits
    assert A.make_knobs("standard", "objects", {"mixup": 0.2, "hflip": None}).mixup == 0.2
    with pytest.raises(ZooError, match="valid: none, standard, strong"):
        A.make_knobs("heavy")
    with pytest.raises(ZooError, match="unknown augmentation knob"):
        A.make_knobs("none", overrides={"flip": 1})


@pytest.mark.parametrize("kind", ["objects", "digits"])
@pytest.mark.parametrize("preset", ["standard", "strong"])
def test_pipeline_is_random_in_training_and_normalises_like_eval(kind: str, preset: str) -> None:
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    x = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8)
    train = A.Augment(mean, std, 10, A.make_knobs(preset, kind))
    a, b = train.images(x), train.images(x)
    assert a.shape == x.shape and a.dtype == torch.float32
    assert not torch.allclose(a, b)
    plain = A.Augment(mean, std, 10)
    assert not plain.is_random
    expected = (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(plain.images(x), expected, atol=1e-6)
    assert torch.equal(plain.images(x), plain.images(x))
    assert torch.allclose(A.denormalize(plain.images(x), mean, std), x.float() / 255, atol=1e-6)


def test_pipeline_mixes_labels_only_when_asked() -> None:
    x = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(8) % 4
    xo, yo = A.Augment((0.5,) * 3, (0.5,) * 3, 4, A.make_knobs("none", overrides={"cutmix": 1.0, "mixup": 0.4}))(x, y)
    assert yo.shape == (8, 4) and torch.allclose(yo.sum(1), torch.ones(8))
    assert torch.equal(A.Augment((0.5,) * 3, (0.5,) * 3, 4)(x, y)[1], y)
    with pytest.raises(ZooError, match="num_classes"):
        A.Augment((0.5,), (0.5,), 0, A.make_knobs("none", overrides={"mixup": 0.2}))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
def test_pipeline_runs_on_the_gpu() -> None:
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, device="cuda")
    pipe = A.Augment((0.5,) * 3, (0.5,) * 3, 10, A.make_knobs("strong", overrides={"cutmix": 1.0}))
    xo, yo = pipe(x, torch.arange(16, device="cuda") % 10)
    assert xo.device.type == "cuda" and yo.device.type == "cuda"


def test_normalisation_is_one_mechanism_for_images_and_batches() -> None:
    """normalize, normalize_uint8 and denormalize agree, and take one (C, H, W) image or an (N, C, H, W) batch."""
    from zoo.datamodules.whiten import preprocess

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    u8 = (torch.rand(4, 3, 5, 6) * 255).round().to(torch.uint8)
    x = u8.float() / 255
    by_hand = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(A.normalize(x, mean, std), by_hand, atol=1e-6)
    assert torch.allclose(A.normalize_uint8(u8, mean, std), by_hand, atol=1e-5)
    assert torch.allclose(A.normalize(x[1], mean, std), by_hand[1], atol=1e-6)  # one image
    assert torch.allclose(A.denormalize(by_hand, mean, std), x, atol=1e-6)
    assert torch.allclose(A.denormalize(by_hand[2], mean, std), x[2], atol=1e-6)
    assert torch.allclose(preprocess(x[0], {"mean": list(mean), "std": list(std)}), by_hand[0], atol=1e-6)


@pytest.mark.parametrize(("knob", "value", "message"), [
    ("mixup", -1, "data.aug.mixup must be a number >= 0; got -1"),
    ("rotate", "abc", "data.aug.rotate must be a number >= 0; got 'abc'"),
    ("hflip", 1.5, "data.aug.hflip is a probability, at most 1; got 1.5"),
    ("resized_crop", [0.8, 0.2], "data.aug.resized_crop must be [low, high] with 0 < low <= high <= 1"),
])
def test_a_bad_knob_is_one_line(knob: str, value: object, message: str) -> None:
    with pytest.raises(ZooError) as e:
        A.make_knobs("none", "objects", {knob: value})
    assert message in str(e.value) and "\n" not in str(e.value)
