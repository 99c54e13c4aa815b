"""The Transformer encoder as a sequence model: classifier, regressor, tagger or (causal) language model.

A. Vaswani, N. Shazeer, N. Parmar, J. Uszkoreit, L. Jones, A. N. Gomez, L. Kaiser, I. Polosukhin (2017).
"Attention Is All You Need". NeurIPS 2017.

The idea: no recurrence. Every layer lets each position read every other position directly through
multi-head self-attention (:mod:`zoo.models.attention`), then transforms each position on its own with a
two-layer MLP; residual connections and layer normalisation around both keep a deep stack trainable. A path
between any two steps is one layer long, where an RNN's is as long as their distance, and all steps are
computed at once. Attention by itself ignores order, so a position code is added to the inputs: the paper's
sinusoids (``positions="sinusoidal"``, wavelengths from 2 pi to 10000 * 2 pi) or a learned vector per
position (``"learned"``, as in BERT and ViT). A language model is causal: position t attends to positions
<= t only, so the prediction of token t + 1 never sees it.

:class:`TransformerEncoderLayer` has ``nn.TransformerEncoderLayer``'s names (``self_attn.in_proj_weight``,
``linear1``, ``linear2``, ``norm1``, ``norm2``) and its ``norm_first`` switch: the paper's post-norm
(``x = norm(x + f(x))``) or the pre-norm (``x = x + f(norm(x))``, Xiong et al. 2020, "On Layer Normalization
in the Transformer Architecture"), which trains without a learning-rate warm-up and is the default here.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.errors import ZooError
from zoo.models.attention import MultiheadAttention
from zoo.models.recurrent import OUTPUTS, as_sequence
from zoo.registry import register_model

POSITIONS = ("sinusoidal", "learned")
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


class TransformerEncoderLayer(nn.Module):
    """Self-attention and a position-wise MLP, each in a residual branch with dropout and layer norm.

    Same parameters and arithmetic as ``nn.TransformerEncoderLayer(..., batch_first=True)``.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", layer_norm_eps: float = 1e-5, norm_first: bool = False,
                 impl: str = "fused") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ZooError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, impl=impl)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = ACTIVATIONS[activation]

    def _attend(self, x: Tensor, mask: Tensor | None, padding: Tensor | None, causal: bool) -> Tensor:
        x = self.self_attn(x, x, x, key_padding_mask=padding, attn_mask=mask, is_causal=causal)[0]
        return self.dropout1(x)

    def _mlp(self, x: Tensor) -> Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def forward(self, src: Tensor, src_mask: Tensor | None = None, src_key_padding_mask: Tensor | None = None,
                is_causal: bool = False) -> Tensor:
        x = src  # N x T x d_model
        if self.norm_first:
            x = x + self._attend(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._mlp(self.norm2(x))
        x = self.norm1(x + self._attend(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._mlp(x))


def sinusoidal_positions(length: int, d_model: int) -> Tensor:
    """The paper's position code, length x d_model: PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(...).

    Each pair of coordinates turns at its own frequency, so PE(p + k) is a fixed rotation of PE(p): relative
    offsets are linear functions of the code, and lengths beyond those seen in training still get codes.
    """
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # length x 1
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq[: d_model // 2])
    return pe


class TransformerNet(nn.Module):
    """Inputs -> linear embedding + positions -> ``num_layers`` encoder layers -> linear head.

    Inputs are what the recurrent models read (:func:`zoo.models.recurrent.as_sequence`): float features
    N x T x ``in_channels``, integer tokens N x T from ``in_channels`` symbols, or an image read as pixels. One
    ``input_proj`` embeds both: a token's embedding is the column of its one-hot input, looked up without
    forming the one-hot. ``output="last"``: one prediction per sequence from the mean of the last layer over
    the steps, N x num_classes; ``"all"``: one per step, N x num_classes x T; ``"auto"``: ``all`` for tokens.
    ``causal=True`` masks later steps in ``forward``; :meth:`forward_with_state` (language modelling) always does.
    """

    def __init__(self, num_classes: int, in_channels: int, d_model: int = 128, num_heads: int = 4,
                 num_layers: int = 2, dim_feedforward: int | None = None, dropout: float = 0.1,
                 activation: str = "gelu", positions: str = "sinusoidal", max_len: int = 1024,
                 norm_first: bool = True, causal: bool = False, output: str = "auto", impl: str = "fused") -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ZooError(f"output must be one of {', '.join(OUTPUTS)}; got {output!r}")
        if positions not in POSITIONS:
            raise ZooError(f"positions must be one of {', '.join(POSITIONS)}; got {positions!r}")
        if num_layers < 1 or d_model < 1 or max_len < 1:
            raise ZooError(f"num_layers, d_model and max_len must be positive; got {num_layers}, {d_model}, {max_len}")
        self.in_channels, self.num_classes, self.output, self.causal = in_channels, num_classes, output, causal
        self.max_len, self.num_features = max_len, d_model
        self.input_proj = nn.Linear(in_channels, d_model)
        if positions == "learned":
            self.pos_embedding = nn.Parameter(torch.empty(1, max_len, d_model).normal_(std=0.02))  # ViT's init
        else:
            self.register_buffer("pos_embedding", sinusoidal_positions(max_len, d_model).unsqueeze(0),
                                 persistent=False)  # a function of the position: nothing to store
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(d_model, num_heads, dim_feedforward or 4 * d_model, dropout, activation,
                                    norm_first=norm_first, impl=impl)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()  # pre-norm leaves the sum unnormalised
        self.fc = nn.Linear(d_model, num_classes)
        # Unit-variance embeddings, the scale of the position codes (whose coordinates have variance 1/2).
        nn.init.normal_(self.input_proj.weight, std=1.0)
        nn.init.zeros_(self.input_proj.bias)

    def _embed(self, x: Tensor) -> Tensor:
        x = as_sequence(x, self.in_channels)
        if x.is_floating_point():
            return self.input_proj(x)  # N x T x d_model
        if x.min() < 0 or x.max() >= self.in_channels:
            raise ZooError(f"tokens must lie in 0..{self.in_channels - 1}; got {int(x.min())}..{int(x.max())}")
        return F.embedding(x, self.input_proj.weight.t()) + self.input_proj.bias  # = input_proj(one_hot(x))

    def encode(self, x: Tensor, causal: bool, padding: Tensor | None = None) -> Tensor:
        """N x T x d_model outputs of the last layer; ``padding`` N x T is True at padded steps."""
        h = self._embed(x)  # N x T x d_model
        steps = h.shape[1]
        if steps > self.max_len:
            raise ZooError(f"sequences of {steps} steps are longer than model.max_len={self.max_len}")
        h = self.drop(h + self.pos_embedding[:, :steps])
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=padding, is_causal=causal)  # N x T x d_model
        return self.norm(h)

    def _many_to_many(self, x: Tensor) -> bool:
        return self.output == "all" or (self.output == "auto" and not x.is_floating_point())

    def forward_features(self, x: Tensor) -> Tensor:
        """N x d_model (mean over the steps) for many-to-one, N x T x d_model for many-to-many."""
        h = self.encode(x, self.causal)
        return h if self._many_to_many(x) else h.mean(dim=1)

    def forward_head(self, features: Tensor) -> Tensor:
        logits = self.fc(features)  # N x C, or N x T x C
        return logits.transpose(1, 2) if logits.dim() == 3 else logits  # N x C x T

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_with_state(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Causal many-to-many for language modelling: ``state`` is the context so far (the last ``max_len``
        inputs), so a chunked window or a sampling loop sees what came before, as an RNN's state carries it.

        Returns logits N x C x T for the steps of ``x`` alone, and the new context.
        """
        context = x if state is None else torch.cat([state, x], dim=1)[:, -self.max_len :]  # N x T' (+ features)
        h = self.encode(context, causal=True)[:, -x.shape[1] :]  # N x T x d_model: the new steps
        return self.forward_head(h), context

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes)


@register_model(family="transformer", paper="Vaswani et al., Attention Is All You Need", year=2017,
                kind="sequence", input_size=(28, 28))
def transformer(num_classes: int = 10, in_channels: int = 28, **kwargs: Any) -> TransformerNet:
    """Transformer encoder: pre-norm, GELU, sinusoidal positions by default."""
    return TransformerNet(num_classes, in_channels, **kwargs)
