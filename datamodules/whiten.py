"""PCA and ZCA whitening of images (Bell & Sejnowski 1997; Krizhevsky 2009, "Learning Multiple Layers of
Features from Tiny Images", appendix; Kessy, Lewin & Strimmer 2018, "Optimal Whitening and Decorrelation").

The idea: a linear map ``W`` with ``W Sigma W^T = I`` for the pixel covariance ``Sigma``, so the network sees
decorrelated inputs of unit variance. With ``Sigma = U diag(l) U^T``:

- PCA whitening, ``W = diag(1 / sqrt(l + eps)) U^T``: rotate onto the principal axes, then scale them;
- ZCA whitening, ``W = U diag(1 / sqrt(l + eps)) U^T``: the same, rotated back, which is the whitening map
  whose output stays closest to its input (Kessy et al.), so whitened images still look like images.

``eps`` bounds the gain on directions of (almost) no variance, such as MNIST's always-black border: without
it those directions would be divided by zero. The map is fitted once, on the normalised training split, and
stored as plain tensors (``{"kind", "eps", "mean", "matrix"}``), so a checkpoint carries it and evaluation
and prediction apply the same transform with :func:`apply_whitening`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from zoo.datamodules.augment import normalize

WHITEN_KINDS = ("pca", "zca")


def fit_whitening(x: torch.Tensor, normalise: Callable[[torch.Tensor], torch.Tensor], kind: str, eps: float,
                  chunk: int = 2048) -> dict[str, Any]:
    """Fit ``kind`` whitening on the uint8 images ``x`` (N, ...) as ``normalise`` maps them.

    The mean and covariance are summed in float64 over chunks, so a CIFAR-sized training set needs no
    float64 copy of itself; the result is float32, (D,) mean and (D, D) matrix with D = C * H * W.
    """
    n, d = len(x), x[0].numel()
    total = torch.zeros(d, dtype=torch.float64)
    outer = torch.zeros(d, d, dtype=torch.float64)
    for start in range(0, n, chunk):
        part = normalise(x[start : start + chunk].cpu()).reshape(-1, d).double()
        total += part.sum(0)
        outer += part.T @ part
    mean = total / n
    cov = outer / n - torch.outer(mean, mean)
    eigvals, eigvecs = torch.linalg.eigh((cov + cov.T) / 2)  # ascending eigenvalues, orthonormal columns
    scale = (eigvals.clamp(min=0) + eps).rsqrt()
    matrix = scale[:, None] * eigvecs.T  # PCA: diag(1 / sqrt(l + eps)) U^T
    if kind == "zca":
        matrix = eigvecs @ matrix  # ZCA: U diag(1 / sqrt(l + eps)) U^T
    return {"kind": kind, "eps": float(eps), "mean": mean.float(), "matrix": matrix.float()}


def apply_whitening(x: torch.Tensor, whiten: dict[str, Any] | None) -> torch.Tensor:
    """Whiten normalised inputs, a batch (N, C, H, W) or one image (C, H, W), with a fitted map (a datamodule's
    ``facts()["whitening"]``, tensors or nested lists); ``None`` leaves them as they are. Runs on the inputs'
    device, shape unchanged."""
    if whiten is None:
        return x
    mean = torch.as_tensor(whiten["mean"], dtype=x.dtype, device=x.device)
    matrix = torch.as_tensor(whiten["matrix"], dtype=x.dtype, device=x.device)
    flat = x.reshape(-1, mean.numel())  # N x D
    return ((flat - mean) @ matrix.T).reshape(x.shape)


def preprocess(x: torch.Tensor, facts: dict[str, Any]) -> torch.Tensor:
    """Float images in [0, 1], (C, H, W) or (N, C, H, W), as a checkpoint's data fed them to its model:
    normalised with its mean/std, then whitened if it was. What prediction calls, so that it cannot drift
    from training."""
    return apply_whitening(normalize(x, facts["mean"], facts["std"]), facts.get("whitening"))
