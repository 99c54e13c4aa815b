"""Vision Transformer (ViT).

A. Dosovitskiy, L. Beyer, A. Kolesnikov, D. Weissenborn, X. Zhai, T. Unterthiner, M. Dehghani, M. Minderer,
G. Heigold, S. Gelly, J. Uszkoreit, N. Houlsby (2021). "An Image is Worth 16x16 Words: Transformers for Image
Recognition at Scale". ICLR 2021.

The idea: no convolutions past the first. Cut the image into P x P patches, embed each linearly (one conv with
kernel = stride = P), prepend a learned class token, add learned position embeddings, and run a standard
pre-norm Transformer encoder; the class token's final state is classified. Every token attends to every
other from the first layer on, so the receptive field is the whole image after one attention layer; the
price is weak inductive bias (no locality, no translation equivariance), which ViT pays for with data: it
beats ResNets when pre-trained on 14M-300M images and trails them on ImageNet-1k alone.

State-dict keys are torchvision's (``conv_proj``, ``class_token``, ``encoder.pos_embedding``,
``encoder.layers.encoder_layer_0.self_attention.in_proj_weight``, ``encoder.ln``, ``heads.head``); the attention
is :class:`zoo.models.attention.MultiheadAttention` (``nn.MultiheadAttention``'s parameters, fused kernel).
Inputs of another size than ``image_size`` get the position embeddings resampled bicubically to their grid
(as timm and the paper's fine-tuning at higher resolution do); the side must be a multiple of the patch.
``stem="cifar"`` embeds 4x4 patches of a 32x32 image (64 tokens, the tokenisation of the small-input ViTs of
Hassani et al. 2021), same keys. :func:`vit_lite_7_4` is that paper's CIFAR ViT.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.errors import ZooError
from zoo.models.attention import MultiheadAttention
from zoo.models.layers import check_input_size, check_stem
from zoo.registry import register_model


class MLPBlock(nn.Sequential):
    """Linear - GELU - dropout - Linear - dropout; keys ``0`` and ``3`` like torchvision's ``MLPBlock``."""

    def __init__(self, dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim),
                         nn.Dropout(dropout))
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)


class EncoderBlock(nn.Module):
    """Pre-norm Transformer layer: x + attention(LN(x)), then x + MLP(LN(x)). LayerNorm eps 1e-6."""

    def __init__(self, num_heads: int, hidden_dim: int, mlp_dim: int, dropout: float, attention_dropout: float,
                 impl: str = "fused") -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.self_attention = MultiheadAttention(hidden_dim, num_heads, dropout=attention_dropout, impl=impl)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.mlp = MLPBlock(hidden_dim, mlp_dim, dropout)

    def forward(self, x: Tensor) -> Tensor:
        y = self.ln_1(x)
        x = x + self.dropout(self.self_attention(y, y, y, need_weights=False)[0])  # N x S x D: tokens mix
        return x + self.mlp(self.ln_2(x))  # N x S x D: each token on its own


class Encoder(nn.Module):
    """Position embeddings (the class token's first), dropout, the layers, a final LayerNorm."""

    def __init__(self, seq_length: int, num_layers: int, num_heads: int, hidden_dim: int, mlp_dim: int,
                 dropout: float, attention_dropout: float, impl: str = "fused") -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, hidden_dim).normal_(std=0.02))  # from BERT
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(num_heads, hidden_dim, mlp_dim, dropout, attention_dropout, impl))
            for i in range(num_layers)
        ))  # fmt: skip
        self.ln = nn.LayerNorm(hidden_dim, eps=1e-6)

    def forward(self, x: Tensor, pos_embedding: Tensor) -> Tensor:
        return self.ln(self.layers(self.dropout(x + pos_embedding)))


def resample_positions(pos: Tensor, grid: tuple[int, int]) -> Tensor:
    """1 x (1 + g*g) x D position embeddings (class token first) for a grid of ``grid`` patches: the patch part
    is resized bicubically as a D-channel g x g image; the class token's embedding is kept."""
    g = math.isqrt(pos.shape[1] - 1)
    if (g, g) == tuple(grid):
        return pos
    cls, patches = pos[:, :1], pos[:, 1:]
    patches = patches.reshape(1, g, g, -1).permute(0, 3, 1, 2)  # 1 x D x g x g
    patches = F.interpolate(patches, size=grid, mode="bicubic", align_corners=True)  # torchvision's
    return torch.cat([cls, patches.flatten(2).transpose(1, 2)], dim=1)  # 1 x (1 + h*w) x D


class VisionTransformer(nn.Module):
    """Patch embedding - class token - Transformer encoder - linear head on the class token.

    Args:
        image_size, patch_size: the input side the position embeddings are made for, and the patch side P.
        num_layers, num_heads, hidden_dim, mlp_dim: the encoder (ViT-B: 12, 12, 768, 3072).
        stem: ``"imagenet"`` (``image_size``, ``patch_size`` as given) or ``"cifar"`` (4x4 patches of 32x32).
        impl: the attention path, ``"fused"`` or ``"reference"`` (head by head); same weights.
    """

    min_size: int | None = None  # from @register_model(min_size=...), set when built by name

    def __init__(self, image_size: int, patch_size: int, num_layers: int, num_heads: int, hidden_dim: int,
                 mlp_dim: int, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.0,
                 attention_dropout: float = 0.0, stem: str = "imagenet", impl: str = "fused") -> None:
        super().__init__()
        check_stem(stem)
        if stem == "cifar":
            image_size, patch_size = 32, 4
        if image_size % patch_size:
            raise ZooError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.image_size, self.patch_size, self.hidden_dim, self.stem = image_size, patch_size, hidden_dim, stem
        self.num_features = hidden_dim
        self.conv_proj = nn.Conv2d(in_channels, hidden_dim, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        seq_length = (image_size // patch_size) ** 2 + 1
        self.encoder = Encoder(seq_length, num_layers, num_heads, hidden_dim, mlp_dim, dropout, attention_dropout,
                               impl)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(hidden_dim, num_classes)))
        fan_in = in_channels * patch_size * patch_size  # torchvision's init
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        self._zero_head()

    def _zero_head(self) -> None:
        nn.init.zeros_(self.heads.head.weight)  # the paper's (and torchvision's) zero-initialised head
        nn.init.zeros_(self.heads.head.bias)

    @property
    def receptive_field_note(self) -> str:
        """What ``zoo.stats`` prints for the receptive field: the traced number would stop at the patch."""
        p = self.patch_size
        return f"whole image after the first attention layer ({p}x{p} patch before it)"

    def forward_features(self, x: Tensor) -> Tensor:
        """N x C x H x W image -> N x (1 + H/P * W/P) x D tokens after the encoder (class token first)."""
        x = check_input_size(x, self.min_size, f"ViT with {self.patch_size}x{self.patch_size} patches")
        n, _, h, w = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ZooError(f"ViT with {p}x{p} patches needs sides that are multiples of {p}; got {h}x{w}")
        x = self.conv_proj(x)  # N x D x H/P x W/P: one embedding per patch
        x = x.reshape(n, self.hidden_dim, -1).permute(0, 2, 1)  # N x H/P*W/P x D: a sequence of patches
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)  # N x (1 + H/P*W/P) x D
        pos = resample_positions(self.encoder.pos_embedding, (h // p, w // p))
        return self.encoder(x, pos)  # N x 197 x 768 (ViT-B/16 at 224)

    def forward_head(self, x: Tensor) -> Tensor:
        return self.heads(x[:, 0])  # N x num_classes, from the class token

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.heads.head = nn.Linear(self.hidden_dim, num_classes)
        self._zero_head()


_VIT = dict(family="vit", paper="Dosovitskiy et al., An Image is Worth 16x16 Words: Transformers for Image "
            "Recognition at Scale", year=2021)


def _vit(patch: int, layers: int, heads: int, dim: int, mlp: int, num_classes: int, in_channels: int,
         **kwargs: Any) -> VisionTransformer:
    return VisionTransformer(kwargs.pop("image_size", 224), patch, layers, heads, dim, mlp, num_classes=num_classes,
                             in_channels=in_channels, **kwargs)


@register_model(**_VIT, min_size={"imagenet": 16, "cifar": 4}, torchvision="vit_b_16")  # one patch
def vit_b_16(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> VisionTransformer:
    return _vit(16, 12, 12, 768, 3072, num_classes, in_channels, **kwargs)


@register_model(**_VIT, min_size={"imagenet": 32, "cifar": 4}, torchvision="vit_b_32")
def vit_b_32(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> VisionTransformer:
    return _vit(32, 12, 12, 768, 3072, num_classes, in_channels, **kwargs)


@register_model(**_VIT, min_size={"imagenet": 16, "cifar": 4}, torchvision="vit_l_16")
def vit_l_16(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> VisionTransformer:
    return _vit(16, 24, 16, 1024, 4096, num_classes, in_channels, **kwargs)


# ViT-Lite-7/4 (A. Hassani, S. Walton, N. Shah, A. Abuduweili, J. Li, H. Shi (2021). "Escaping the Big Data
# Paradigm with Compact Transformers", Table 1): 7 layers, 4 heads, width 256, MLP ratio 2, 4x4 patches of a
# 32x32 image; 3.72M parameters, 91.38% on CIFAR-10 trained from scratch (300 epochs, heavy augmentation).
@register_model(family="vit", paper="Hassani et al., Escaping the Big Data Paradigm with Compact Transformers",
                year=2021, input_size=(3, 32, 32), min_size=4)
def vit_lite_7_4(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> VisionTransformer:
    return VisionTransformer(32, 4, 7, 4, 256, 512, num_classes=num_classes, in_channels=in_channels, **kwargs)
