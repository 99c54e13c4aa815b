"""PCA and ZCA whitening (issue 18 item 6): fitted on the training split only, the whitened training data has
identity covariance, ZCA's output stays closest to its input, and the fitted map travels as plain values."""

from __future__ import annotations

import pytest
import torch

from zoo.datamodules.base import InMemoryDataModule, Split
from zoo.datamodules.sequence import Adding
from zoo.datamodules.vision import MNISTTiny
from zoo.datamodules.whiten import apply_whitening, fit_whitening
from zoo.errors import ZooError


class _Correlated(InMemoryDataModule):
    """1 x 4 x 4 uint8 images with strongly correlated pixels (a random mixing of independent sources)."""

    name = "correlated"
    num_classes = 2
    input_shape = (1, 4, 4)
    mean, std = (0.5,), (0.25,)

    def load_splits(self) -> dict[str, Split]:
        g = torch.Generator().manual_seed(0)
        mixing = torch.randn(16, 16, generator=g)

        def images(n: int, shift: float = 0.0) -> torch.Tensor:
            z = torch.randn(n, 16, generator=g) @ mixing.T
            return (z * 12 + 128 + shift).clamp(0, 255).round().to(torch.uint8).view(n, 1, 4, 4)

        y = torch.zeros(4000, dtype=torch.long)
        return {"train": Split(images(4000), y), "val": Split(images(500, 40.0), y[:500]),
                "test": Split(images(500, -40.0), y[:500])}


def _normalised(dm: InMemoryDataModule, x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255 - dm.mean[0]) / dm.std[0]


def _cov(z: torch.Tensor) -> torch.Tensor:
    flat = z.reshape(len(z), -1).double()
    flat = flat - flat.mean(0)
    return flat.T @ flat / len(flat)


@pytest.mark.parametrize("kind", ["pca", "zca"])
def test_whitened_training_data_has_identity_covariance(kind: str) -> None:
    dm = _Correlated(whiten=kind, whiten_eps=1e-8)
    dm.setup()
    x = dm.splits["train"].x
    before = _cov(_normalised(dm, x))
    assert (before - torch.eye(16, dtype=torch.float64)).abs().max() > 0.3  # far from white before
    z = dm.eval_transform()(x)
    assert z.shape == x.shape and z.dtype == torch.float32
    assert torch.allclose(_cov(z), torch.eye(16, dtype=torch.float64), atol=1e-4)
    assert z.reshape(len(z), -1).mean(0).abs().max() < 1e-4
    assert torch.equal(dm.train_transform()(x), z)  # no augmentation: training batches are whitened alike


def test_zca_stays_closest_to_the_input_among_whitening_maps() -> None:
    """Kessy et al. (2018): ZCA minimises E||z - x||^2 over every W with W Sigma W^T = I (PCA, and any
    rotation of ZCA, are such maps too)."""
    fits = {}
    for kind in ("pca", "zca"):
        dm = _Correlated(whiten=kind, whiten_eps=1e-8)
        dm.setup()
        fits[kind] = dm.whitening
    x = _normalised(dm, dm.splits["train"].x)
    centred = x.reshape(len(x), -1) - fits["zca"]["mean"]
    distance = {k: ((apply_whitening(x, f).reshape(len(x), -1) - centred) ** 2).sum(1).mean() for k, f in fits.items()}
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(1)))
    rotated = {**fits["zca"], "matrix": q @ fits["zca"]["matrix"]}
    z_rot = apply_whitening(x, rotated)
    assert torch.allclose(_cov(z_rot), torch.eye(16, dtype=torch.float64), atol=1e-4)  # also white
    d_rot = ((z_rot.reshape(len(x), -1) - centred) ** 2).sum(1).mean()
    assert distance["zca"] < distance["pca"] and distance["zca"] < d_rot


def test_fitted_on_the_training_split_only() -> None:
    dm = _Correlated(whiten="zca")
    dm.setup()
    normalise = lambda x: _normalised(dm, x)  # noqa: E731
    own = fit_whitening(dm.splits["train"].x, normalise, "zca", dm.whiten_eps)
    assert torch.allclose(dm.whitening["matrix"], own["matrix"], atol=1e-4)
    assert torch.allclose(dm.whitening["mean"], own["mean"], atol=1e-5)
    everything = torch.cat([dm.splits[s].x for s in ("train", "val", "test")])
    other = fit_whitening(everything, normalise, "zca", dm.whiten_eps)
    assert not torch.allclose(dm.whitening["mean"], other["mean"], atol=1e-3)  # val/test are shifted
    z_val = dm.eval_transform()(dm.splits["val"].x)
    assert z_val.reshape(500, -1).mean() > 1  # the shift shows: val is not re-centred on itself


def test_the_fact_travels_as_plain_values_and_applies_to_one_image_or_a_batch() -> None:
    dm = _Correlated(whiten="pca")
    fact = dm.facts()["whitening"]
    assert fact["kind"] == "pca" and fact["mean"].shape == (16,) and fact["matrix"].shape == (16, 16)
    x = _normalised(dm, dm.splits["test"].x[:5])
    as_lists = {**fact, "mean": fact["mean"].tolist(), "matrix": fact["matrix"].tolist()}
    batch = apply_whitening(x, fact)
    assert torch.allclose(apply_whitening(x, as_lists), batch)
    assert torch.allclose(apply_whitening(x[0], fact), batch[0], atol=1e-6)
    assert apply_whitening(x, None) is x
    assert "whitening" not in _Correlated().facts()  # off by default: facts as before


def test_mnist_tiny_zca_and_the_refusals() -> None:
    dm = MNISTTiny(whiten="zca")
    dm.setup()
    assert dm.whitening["matrix"].shape == (784, 784)
    z = dm.eval_transform()(dm.splits["train"].x[:8])
    assert z.shape == (8, 1, 28, 28) and torch.isfinite(z).all()
    with pytest.raises(ZooError, match="data.whiten must be none, pca or zca"):
        MNISTTiny(whiten="pcaa")
    with pytest.raises(ZooError, match="data.whiten_eps"):
        MNISTTiny(whiten="zca", whiten_eps=0)
    with pytest.raises(ZooError, match="sequence datasets take no whitening"):
        Adding(whiten="zca")
