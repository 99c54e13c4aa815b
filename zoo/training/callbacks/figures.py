"""Matplotlib figures the diagnostics log after testing: the confusion matrix and the most confident mistakes."""

from __future__ import annotations

import math
from typing import Any

import torch

from zoo.extras import require


def _class_name(names: list[str], i: int) -> str:
    return names[i] if i < len(names) else str(i)


def confusion_figure(cm: torch.Tensor, class_names: list[str]) -> Any:
    """A matplotlib figure of a confusion matrix: rows true classes, columns predictions, row-normalised colour."""
    matplotlib = require("matplotlib", "figures", "the figures of callbacks.diagnostics")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = cm.shape[0]
    names = class_names if len(class_names) == c else [str(i) for i in range(c)]
    rates = cm.float() / cm.sum(1, keepdim=True).clamp(min=1)
    size = min(12.0, 2.0 + 0.45 * c)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    if c <= 30:
        ax.set_xticks(range(c), names, rotation=90, fontsize=8)
        ax.set_yticks(range(c), names, fontsize=8)
        if c <= 20:
            for i in range(c):
                for j in range(c):
                    if cm[i, j]:
                        ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                                color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"test accuracy {cm.diag().sum().item() / max(1, cm.sum().item()):.4f}")
    fig.tight_layout()
    return fig


def wrong_figure(wrong: list[tuple[float, int, int, torch.Tensor]], class_names: list[str], mean: list[float],
                 std: list[float]) -> Any:
    """A grid of misclassified images (un-normalised with the data's mean/std), titled "pred (p) / true"."""
    matplotlib = require("matplotlib", "figures", "the figures of callbacks.diagnostics")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(8, len(wrong))
    rows = math.ceil(len(wrong) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (conf, pred, true, img) in zip(axes.flat, wrong):
        if len(mean) == img.shape[0] and len(std) == img.shape[0]:
            img = img * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
        else:
            img = (img - img.min()) / (img.max() - img.min()).clamp(min=1e-8)
        img = img.clamp(0, 1)
        if img.shape[0] == 1:
            ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(img[:3].permute(1, 2, 0).numpy())
        ax.set_title(f"{_class_name(class_names, pred)} ({conf:.2f}) / {_class_name(class_names, true)}", fontsize=7)
    fig.tight_layout()
    return fig


