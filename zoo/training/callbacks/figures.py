"""Matplotlib figures the diagnostics log after testing: the confusion matrix and the most confident mistakes."""

from __future__ import annotations

import math
from typing import Any

import torch

from zoo.datamodules.augment import denormalize
from zoo.extras import require


def class_name(names: list[str], i: int) -> str:
    """The name of class ``i``, or its index where the data has no names."""
    return names[i] if i < len(names) else str(i)


def per_class_figure(acc: list[float], class_names: list[str]) -> Any:
    """Test accuracy of each class (its recall) as horizontal bars, worst first: where the errors are."""
    matplotlib = require("matplotlib", "figures", "the figures of callbacks.diagnostics")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(range(len(acc)), key=lambda i: acc[i])
    fig, ax = plt.subplots(figsize=(5, max(2.0, 0.25 * len(acc) + 0.8)))
    ax.barh(range(len(acc)), [acc[i] for i in order], color="tab:blue")
    ax.set_yticks(range(len(acc)), [class_name(class_names, i) for i in order], fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("test accuracy (recall)")
    ax.set_title("accuracy per class")
    fig.tight_layout()
    return fig


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
            img = denormalize(img[None], mean, std)[0]
        else:
            img = (img - img.min()) / (img.max() - img.min()).clamp(min=1e-8)
        img = img.clamp(0, 1)
        if img.shape[0] == 1:
            ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(img[:3].permute(1, 2, 0).numpy())
        ax.set_title(f"{class_name(class_names, pred)} ({conf:.2f}) / {class_name(class_names, true)}", fontsize=7)
    fig.tight_layout()
    return fig




def curves_figure(history: dict[str, dict[int, float]]) -> Any:
    """Loss (left) and the other metrics (right) per epoch, training and validation side by side."""
    matplotlib = require("matplotlib", "figures", "the figures of callbacks.diagnostics")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = {k: v for k, v in history.items() if k.endswith("loss") or k.endswith("loss_epoch")}
    others = {k: v for k, v in history.items() if k not in losses}
    fig, axes = plt.subplots(1, 2 if others else 1, figsize=(9 if others else 4.5, 3.2), squeeze=False)
    for ax, group, label in zip(axes[0], (losses, others), ("loss", "metric")):
        for tag, points in sorted(group.items()):
            epochs = sorted(points)
            ax.plot([e + 1 for e in epochs], [points[e] for e in epochs], marker="o", markersize=3, label=tag)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
