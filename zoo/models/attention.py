"""Multi-head attention, written out head by head, with a fused path and ``nn.MultiheadAttention``'s parameters.

A. Vaswani, N. Shazeer, N. Parmar, J. Uszkoreit, L. Jones, A. N. Gomez, L. Kaiser, I. Polosukhin (2017).
"Attention Is All You Need". NeurIPS 2017.

The idea: every position asks a question (query) of every other position's key, and reads their values in
proportion to the answer::

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

Several heads do this in parallel, each in its own d_k = E / H dimensional projection of the input, so one
head can follow syntax while another follows position; their outputs are concatenated and projected back.
Dividing by sqrt(d_k) keeps the dot products at unit variance, so the softmax does not saturate as d_k grows.

Two implementations share one set of parameters with ``torch.nn.MultiheadAttention``'s names and layouts
(``in_proj_weight`` 3E x E stacking W_q, W_k, W_v; ``in_proj_bias``; ``out_proj.weight``; ``out_proj.bias``),
so state dicts move both ways without renaming: ``impl="reference"`` runs :func:`reference_attention`, a
Python loop over the heads (what a student reads); ``impl="fused"`` (the default) runs
``torch.nn.functional.scaled_dot_product_attention`` on all heads at once (flash / memory-efficient kernels
on a GPU). Masks follow ``nn.MultiheadAttention``: in a boolean ``attn_mask`` or ``key_padding_mask`` True
means "may not attend"; a float mask is added to the scores; ``is_causal`` forbids attending to later positions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.errors import ZooError

IMPLS = ("fused", "reference")


def causal_mask(length: int, device: torch.device | None = None) -> Tensor:
    """L x L boolean mask, True above the diagonal: position i may not look at positions j > i."""
    return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)


def additive_mask(
    attn_mask: Tensor | None, key_padding_mask: Tensor | None, is_causal: bool, n: int, heads: int,
    length: int, source: int, dtype: torch.dtype, device: torch.device,
) -> Tensor | None:  # fmt: skip
    """The three kinds of mask as one float mask N x H x L x S to add to the scores (-inf where forbidden).

    ``attn_mask``: L x S or N*H x L x S; ``key_padding_mask``: N x S (True at padding); ``is_causal``: L x L.
    """
    masks = []
    if attn_mask is not None:
        m = attn_mask.view(n, heads, length, source) if attn_mask.dim() == 3 else attn_mask
        masks.append(m)
    if key_padding_mask is not None:
        masks.append(key_padding_mask.view(n, 1, 1, source))
    if is_causal:
        masks.append(causal_mask(length, device=device))
    if not masks:
        return None
    out = torch.zeros((), dtype=dtype, device=device)
    for m in masks:
        out = out + (torch.zeros_like(m, dtype=dtype).masked_fill(m, float("-inf")) if m.dtype == torch.bool
                     else m.to(dtype))
    return out.expand(n, heads, length, source)


def reference_attention(
    query: Tensor, key: Tensor, value: Tensor, num_heads: int, in_proj_weight: Tensor, in_proj_bias: Tensor | None,
    out_proj: nn.Linear, mask: Tensor | None, dropout: float, training: bool,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Multi-head attention, one head at a time: query N x L x E, key and value N x S x E.

    Returns the output N x L x E and each head's attention weights N x H x L x S. Leading dimensions may be
    several (Swin's batch x windows); ``mask`` is ... x H x L x S and broadcasts over them.
    """
    e = query.shape[-1]
    d = e // num_heads  # d_k: each head's width
    w_q, w_k, w_v = in_proj_weight.chunk(3)  # E x E each: rows h*d:(h+1)*d belong to head h
    b_q, b_k, b_v = in_proj_bias.chunk(3) if in_proj_bias is not None else (None, None, None)
    heads, weights = [], []
    for h in range(num_heads):
        rows = slice(h * d, (h + 1) * d)
        q = F.linear(query, w_q[rows], None if b_q is None else b_q[rows])  # N x L x d
        k = F.linear(key, w_k[rows], None if b_k is None else b_k[rows])  # N x S x d
        v = F.linear(value, w_v[rows], None if b_v is None else b_v[rows])  # N x S x d
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # N x L x S: how well each query matches each key
        if mask is not None:
            scores = scores + mask.select(-3, h)  # -inf where attending is forbidden
        attn = torch.softmax(scores, dim=-1)  # each query's weights over the keys sum to 1
        weights.append(attn)
        attn = F.dropout(attn, dropout, training)  # drop whole query-key links while training
        heads.append(attn @ v)  # N x L x d: a weighted mean of the values
    out = out_proj(torch.cat(heads, dim=-1))  # N x L x E: concatenate the heads, mix them
    return out, torch.stack(weights, dim=-3)


def fused_attention(
    query: Tensor, key: Tensor, value: Tensor, num_heads: int, in_proj_weight: Tensor, in_proj_bias: Tensor | None,
    out_proj: nn.Linear, mask: Tensor | None, dropout: float, training: bool, is_causal: bool = False,
) -> Tensor:  # fmt: skip
    """The same arithmetic on all heads at once with ``F.scaled_dot_product_attention``."""
    e = query.shape[-1]
    if query is key and key is value:  # self-attention: one matrix product for q, k and v
        q, k, v = F.linear(query, in_proj_weight, in_proj_bias).chunk(3, dim=-1)
    else:
        w = in_proj_weight.chunk(3)
        b = in_proj_bias.chunk(3) if in_proj_bias is not None else (None, None, None)
        q, k, v = F.linear(query, w[0], b[0]), F.linear(key, w[1], b[1]), F.linear(value, w[2], b[2])

    def split(t: Tensor) -> Tensor:
        return t.unflatten(-1, (num_heads, e // num_heads)).transpose(-3, -2)  # N x H x T x d

    out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask,
                                         dropout_p=dropout if training else 0.0, is_causal=is_causal)
    return out_proj(out.transpose(-3, -2).flatten(-2))  # N x L x E


class MultiheadAttention(nn.Module):
    """Batch-first multi-head attention with ``nn.MultiheadAttention``'s parameter names and call.

    ``forward(query, key, value, key_padding_mask=None, need_weights=False, attn_mask=None, is_causal=False)``
    returns ``(output N x L x E, weights N x L x S averaged over heads, or None)``. ``need_weights=True``
    runs the reference path (the fused kernel never forms the weights), as ``nn.MultiheadAttention`` does.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 impl: str = "fused") -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ZooError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if impl not in IMPLS:
            raise ZooError(f"impl must be one of {', '.join(IMPLS)}; got {impl!r}")
        self.embed_dim, self.num_heads, self.dropout, self.impl = embed_dim, num_heads, dropout, impl
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim)) if bias else None
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.MultiheadAttention``'s: Xavier-uniform projections, zero biases."""
        nn.init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
        need_weights: bool = False, attn_mask: Tensor | None = None, is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:  # fmt: skip
        n, length, _ = query.shape
        source = key.shape[1]
        if self.impl == "fused" and not need_weights:
            if attn_mask is None and key_padding_mask is None:  # the kernel builds the causal mask itself
                return fused_attention(query, key, value, self.num_heads, self.in_proj_weight, self.in_proj_bias,
                                       self.out_proj, None, self.dropout, self.training, is_causal), None
            mask = additive_mask(attn_mask, key_padding_mask, is_causal, n, self.num_heads, length, source,
                                 query.dtype, query.device)
            return fused_attention(query, key, value, self.num_heads, self.in_proj_weight, self.in_proj_bias,
                                   self.out_proj, mask, self.dropout, self.training), None
        mask = additive_mask(attn_mask, key_padding_mask, is_causal, n, self.num_heads, length, source, query.dtype,
                             query.device)
        out, weights = reference_attention(query, key, value, self.num_heads, self.in_proj_weight,
                                           self.in_proj_bias, self.out_proj, mask, self.dropout, self.training)
        return out, weights.mean(dim=1) if need_weights else None

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, impl={self.impl}"
