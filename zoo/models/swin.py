"""Swin Transformer.

Z. Liu, Y. Lin, Y. Cao, H. Hu, Y. Wei, Z. Zhang, S. Lin, B. Guo (2021). "Swin Transformer: Hierarchical
Vision Transformer using Shifted Windows". ICCV 2021.

The idea: attention inside local windows, shifted between layers. A ViT attends over all N patches (cost
N^2); Swin attends within non-overlapping M x M windows of patches (cost N M^2, linear in the image), and every
second block shifts the window grid by M/2 so that neighbouring windows exchange information. Patch merging
(concatenate each 2x2 neighbourhood, 4C -> 2C linear) halves the resolution between stages, so the network has
a ConvNet's pyramid (strides 4, 8, 16, 32) and its feature maps suit detection and segmentation. A learned
relative position bias B (one value per head and relative offset, (2M-1)^2 of them) is added to the scores:
softmax(Q K^T / sqrt(d) + B) V.

State-dict keys are torchvision's (``features.0.0`` patch conv, ``features.1.0.attn.qkv``,
``features.1.0.attn.relative_position_bias_table``, ``features.2.reduction``, ``norm``, ``head``), so its weights
load strictly and give its outputs. ``qkv`` stacks W_q, W_k, W_v like ``nn.MultiheadAttention``'s
``in_proj_weight``, so the windows run through :mod:`zoo.models.attention` (``impl="fused"`` or ``"reference"``),
with the bias and the shift mask as its float mask.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.errors import ZooError
from zoo.models.attention import IMPLS, fused_attention, reference_attention
from zoo.models.layers import check_input_size
from zoo.models.vit import MLPBlock
from zoo.registry import register_model


class Permute(nn.Module):
    """``x.permute(dims)`` as a module: keeps torchvision's index numbering of ``features.0``."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(*self.dims)


def stochastic_depth(x: Tensor, p: float, training: bool) -> Tensor:
    """Drop the whole residual branch of each sample with probability ``p`` while training, scaling the kept
    ones by 1 / (1 - p) (G. Huang et al. 2016, "Deep Networks with Stochastic Depth")."""
    if not training or p == 0.0:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p) if p < 1.0 else x * keep


def relative_position_index(m: int) -> Tensor:
    """M^2 x M^2 -> flat index into the (2M-1)^2 bias table of the offset between two window positions."""
    coords = torch.stack(torch.meshgrid(torch.arange(m), torch.arange(m), indexing="ij")).flatten(1)  # 2 x M^2
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (m - 1)  # M^2 x M^2 x 2, offsets >= 0
    return (rel[..., 0] * (2 * m - 1) + rel[..., 1]).flatten()


def shift_mask(height: int, width: int, m: int, shift: int, device: torch.device) -> Tensor:
    """nW x M^2 x M^2 additive mask of a cyclically shifted grid: -100 between positions that came from
    different regions of the image (the roll wrapped them together), 0 elsewhere (torchvision's values)."""
    region = torch.zeros(height, width, device=device)
    count = 0
    for h in ((0, -m), (-m, -shift), (-shift, None)):
        for w in ((0, -m), (-m, -shift), (-shift, None)):
            region[h[0] : h[1], w[0] : w[1]] = count
            count += 1
    region = region.view(height // m, m, width // m, m).permute(0, 2, 1, 3).reshape(-1, m * m)  # nW x M^2
    diff = region.unsqueeze(1) - region.unsqueeze(2)  # nW x M^2 x M^2
    return diff.masked_fill(diff != 0, -100.0)


class ShiftedWindowAttention(nn.Module):
    """Multi-head self-attention within M x M windows, the grid shifted by ``shift`` (0 or M/2)."""

    def __init__(self, dim: int, window_size: int, shift_size: int, num_heads: int, attention_dropout: float = 0.0,
                 dropout: float = 0.0, impl: str = "fused") -> None:
        super().__init__()
        if impl not in IMPLS:
            raise ZooError(f"impl must be one of {', '.join(IMPLS)}; got {impl!r}")
        self.window_size, self.shift_size, self.num_heads, self.impl = window_size, shift_size, num_heads, impl
        self.attention_dropout, self.dropout = attention_dropout, dropout
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window_size))  # torchvision's key

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape  # N x H x W x C, channels last
        m = self.window_size
        x = F.pad(x, (0, 0, 0, (m - w % m) % m, 0, (m - h % m) % m))  # pad to whole windows
        _, ph, pw, _ = x.shape
        shift = self.shift_size if m < min(ph, pw) else 0  # one window covers the map: nothing to shift
        if shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))  # the windows straddle the old borders
        nw = (ph // m) * (pw // m)
        x = x.view(b, ph // m, m, pw // m, m, c).permute(0, 1, 3, 2, 4, 5).reshape(b, nw, m * m, c)  # windows
        bias = self.relative_position_bias_table[self.relative_position_index]  # M^4 x heads
        mask = bias.view(m * m, m * m, -1).permute(2, 0, 1)  # heads x M^2 x M^2: the bias of each offset
        if shift:
            mask = mask + shift_mask(ph, pw, m, shift, x.device).unsqueeze(1)  # nW x heads x M^2 x M^2
        attend = fused_attention if self.impl == "fused" else reference_attention
        x = attend(x, x, x, self.num_heads, self.qkv.weight, self.qkv.bias, self.proj, mask, self.attention_dropout,
                   self.training)  # N x nW x M^2 x C, the mask broadcast over the batch
        x = F.dropout(x[0] if isinstance(x, tuple) else x, self.dropout, self.training)
        x = x.view(b, ph // m, pw // m, m, m, c).permute(0, 1, 3, 2, 4, 5).reshape(b, ph, pw, c)  # windows -> map
        if shift:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        return x[:, :h, :w, :].contiguous()  # N x H x W x C


class SwinTransformerBlock(nn.Module):
    """x + drop_path(W-MSA(LN(x))), then x + drop_path(MLP(LN(x))); W-MSA with shifted windows every second."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int, mlp_ratio: float = 4.0,
                 dropout: float = 0.0, attention_dropout: float = 0.0, stochastic_depth_prob: float = 0.0,
                 impl: str = "fused") -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ShiftedWindowAttention(dim, window_size, shift_size, num_heads, attention_dropout, dropout, impl)
        self.stochastic_depth_prob = stochastic_depth_prob
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), dropout)

    def forward(self, x: Tensor) -> Tensor:
        p, t = self.stochastic_depth_prob, self.training
        x = x + stochastic_depth(self.attn(self.norm1(x)), p, t)  # tokens mix within windows
        return x + stochastic_depth(self.mlp(self.norm2(x)), p, t)  # each token on its own


class PatchMerging(nn.Module):
    """Concatenate each 2x2 neighbourhood (4C), LayerNorm, linear to 2C: half the resolution, twice the width."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))  # odd sides: pad to even
        # the four pixels of each 2x2 neighbourhood side by side: N x H/2 x W/2 x 4C
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))  # N x H/2 x W/2 x 2C


class SwinTransformer(nn.Module):
    """Patch embedding (4x4 conv, LayerNorm) - 4 stages of Swin blocks with patch merging between - LayerNorm -
    global average pool - head. Swin-T: C = 96, depths 2, 2, 6, 2, heads 3, 6, 12, 24, window 7."""

    min_size: int | None = None  # from @register_model(min_size=...), set when built by name

    def __init__(self, patch_size: int, embed_dim: int, depths: list[int], num_heads: list[int], window_size: int,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, attention_dropout: float = 0.0,
                 stochastic_depth_prob: float = 0.1, num_classes: int = 1000, in_channels: int = 3,
                 impl: str = "fused") -> None:
        super().__init__()
        self.patch_size, self.window_size = patch_size, window_size
        layers: list[nn.Module] = [nn.Sequential(
            nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size),
            Permute([0, 2, 3, 1]),  # N x H/4 x W/4 x C: channels last from here on
            nn.LayerNorm(embed_dim),
        )]  # fmt: skip
        total, k = sum(depths), 0
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            dim = embed_dim * 2**i
            blocks = []
            for j in range(depth):
                sd = stochastic_depth_prob * k / (total - 1)  # linearly deeper: later blocks dropped more often
                blocks.append(SwinTransformerBlock(dim, heads, window_size, 0 if j % 2 == 0 else window_size // 2,
                                                   mlp_ratio, dropout, attention_dropout, sd, impl))
                k += 1
            layers.append(nn.Sequential(*blocks))
            if i < len(depths) - 1:
                layers.append(PatchMerging(dim))
        self.features = nn.Sequential(*layers)
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes)
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def receptive_field_note(self) -> str:
        """What ``zoo.stats`` prints for the receptive field (the traced number would stop at the patch)."""
        px = self.window_size * self.patch_size
        return f"{px}x{px} px window after the first attention layer, {px * 8} px windows in the last stage"

    def forward_features(self, x: Tensor) -> Tensor:
        """N x C x H x W -> N x H/32 x W/32 x 8C, channels last (torchvision's layout)."""
        x = check_input_size(x, self.min_size, f"Swin with {self.patch_size}x{self.patch_size} patches")
        return self.norm(self.features(x))  # N x 7 x 7 x 768 (Swin-T at 224)

    def forward_head(self, x: Tensor) -> Tensor:
        return self.head(x.mean(dim=(1, 2)))  # global average pool: N x 768 -> N x num_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.head = nn.Linear(self.num_features, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)


@register_model(family="swin", paper="Liu et al., Swin Transformer: Hierarchical Vision Transformer using Shifted "
                "Windows", year=2021, min_size=4, torchvision="swin_t")
def swin_t(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> SwinTransformer:
    kwargs.setdefault("stochastic_depth_prob", 0.2)  # torchvision's swin_t
    return SwinTransformer(4, 96, [2, 2, 6, 2], [3, 6, 12, 24], 7, num_classes=num_classes, in_channels=in_channels,
                           **kwargs)
