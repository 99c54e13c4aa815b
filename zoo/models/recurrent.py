"""Recurrent networks: the Elman RNN, the LSTM and the GRU, written out gate by gate.

J. L. Elman (1990). "Finding Structure in Time". Cognitive Science 14(2).
S. Hochreiter, J. Schmidhuber (1997). "Long Short-Term Memory". Neural Computation 9(8); the forget gate
from F. A. Gers, J. Schmidhuber, F. Cummins (2000). "Learning to Forget: Continual Prediction with LSTM".
K. Cho et al. (2014). "Learning Phrase Representations using RNN Encoder-Decoder for Statistical Machine
Translation". EMNLP.

The idea: one set of weights applied at every time step carries a state through a sequence. A plain RNN
multiplies its gradient by the same recurrent Jacobian at every step, so over long sequences it vanishes
(or explodes). The LSTM keeps an additive memory cell ``c`` that a forget gate near 1 passes on almost
unchanged, and the GRU interpolates between the old state and a candidate with an update gate: both give
the gradient a path through time that is not a product of squashing Jacobians.

Two implementations share one set of parameters, with ``torch.nn``'s names and layouts
(``weight_ih_l0``, ``weight_hh_l0_reverse``, ``bias_ih_l1`` ...): ``impl="reference"`` runs the cells
below step by step in Python (what a student reads); ``impl="fused"`` (the default) runs ``torch.nn``'s
fused kernels, cuDNN on a GPU. :class:`RNN`, :class:`LSTM` and :class:`GRU` *are* ``nn.RNN``/``nn.LSTM``/
``nn.GRU`` subclasses, so their state dicts move both ways without renaming.

Initialisation (:func:`init_recurrent`): orthogonal recurrent weights (A. M. Saxe, J. L. McClelland,
S. Ganguli (2014). "Exact solutions to the nonlinear dynamics of learning in deep linear neural networks"),
LSTM forget-gate bias 1 (R. Jozefowicz, W. Zaremba, I. Sutskever (2015). "An Empirical Exploration of
Recurrent Network Architectures"), or identity recurrent weights for a ReLU RNN, the IRNN (Q. V. Le,
N. Jaitly, G. E. Hinton (2015). "A Simple Way to Initialize Recurrent Networks of Rectified Linear Units").
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from zoo.errors import ZooError
from zoo.registry import register_model

IMPLS = ("fused", "reference")
INITS = ("orthogonal", "identity", "default")
LSTMState = tuple[Tensor, Tensor]


# --------------------------------------------------------------------------------------------------
# Cells: one time step, gate by gate. Gate order in the stacked weights is torch.nn's.
# --------------------------------------------------------------------------------------------------
def rnn_cell(
    x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None, nonlinearity: str
) -> Tensor:
    """Elman RNN step: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``, ``act`` = tanh or ReLU.

    x: N x I, h: N x H, w_ih: H x I, w_hh: H x H -> h': N x H.
    """
    pre = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)  # N x H
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)


def lstm_cell(
    x: Tensor, state: LSTMState, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None
) -> LSTMState:
    """LSTM step with a forget gate; weights stack the gates in the order i, f, g, o (4H rows)::

        i  = sigmoid(W_ii x + b_ii + W_hi h + b_hi)    input gate: how much of the candidate to write
        f  = sigmoid(W_if x + b_if + W_hf h + b_hf)    forget gate: how much of the old cell to keep
        g  = tanh   (W_ig x + b_ig + W_hg h + b_hg)    candidate cell content
        o  = sigmoid(W_io x + b_io + W_ho h + b_ho)    output gate: how much of the cell to show
        c' = f * c + i * g                             additive memory: the gradient's highway
        h' = o * tanh(c')

    x: N x I, h and c: N x H -> (h', c'): N x H each.
    """
    h, c = state
    gates = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)  # N x 4H
    i, f, g, o = gates.chunk(4, dim=1)  # N x H each
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g
    h = o * torch.tanh(c)
    return h, c


def gru_cell(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor:
    """GRU step; weights stack the gates in the order r, z, n (3H rows)::

        r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)        reset gate: how much of h the candidate sees
        z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)        update gate: keep the old state or take the new
        n  = tanh   (W_in x + b_in + r * (W_hn h + b_hn))  candidate state
        h' = (1 - z) * n + z * h

    As in cuDNN and ``torch.nn.GRU``, the reset gate multiplies ``W_hn h + b_hn`` (Cho et al. apply it to
    ``h`` before the product); the two variants train alike, and this one lets one matmul serve all gates.
    x: N x I, h: N x H -> h': N x H.
    """
    gi = F.linear(x, w_ih, b_ih)  # N x 3H
    gh = F.linear(h, w_hh, b_hh)  # N x 3H
    i_r, i_z, i_n = gi.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


class _CellBase(nn.Module):
    """A single cell with ``nn.RNNCell``/``nn.LSTMCell``/``nn.GRUCell``'s parameters (``weight_ih`` ...)."""

    gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(self.gates * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(self.gates * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(self.gates * hidden_size)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(self.gates * hidden_size)) if bias else None
        bound = hidden_size**-0.5  # torch.nn's default: U(-1/sqrt(H), 1/sqrt(H)) for every parameter
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _weights(self) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh

    def _zeros(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0], self.hidden_size)


class RNNCell(_CellBase):
    """Elman cell (:func:`rnn_cell`); ``nonlinearity`` is ``"tanh"`` or ``"relu"``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh") -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ZooError(f"nonlinearity must be 'tanh' or 'relu'; got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias)
        self.nonlinearity = nonlinearity

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        return rnn_cell(x, self._zeros(x) if h is None else h, *self._weights(), self.nonlinearity)


class LSTMCell(_CellBase):
    """LSTM cell (:func:`lstm_cell`)."""

    gates = 4

    def forward(self, x: Tensor, state: LSTMState | None = None) -> LSTMState:
        state = (self._zeros(x), self._zeros(x)) if state is None else state
        return lstm_cell(x, state, *self._weights())


class GRUCell(_CellBase):
    """GRU cell (:func:`gru_cell`)."""

    gates = 3

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        return gru_cell(x, self._zeros(x) if h is None else h, *self._weights())


# --------------------------------------------------------------------------------------------------
# Layers over time: torch.nn's modules, plus a reference path that loops over the cells above.
# --------------------------------------------------------------------------------------------------
def _check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ZooError(f"impl must be one of {', '.join(IMPLS)}; got {impl!r}")
    return impl


class _TimeLoop:
    """``forward`` for :class:`RNN`/:class:`LSTM`/:class:`GRU`: the fused kernel, or the cells in a Python loop.

    The reference path accepts what ``torch.nn`` accepts: (T, N, I) or batch-first (N, T, I) tensors,
    unbatched (T, I) tensors, and :class:`PackedSequence` inputs, whose padding it masks: a sequence's
    state stops changing after its last step, and the reverse direction starts at that last step.
    """

    impl: str
    mode: str
    num_layers: int
    hidden_size: int
    bidirectional: bool
    batch_first: bool
    bias: bool
    dropout: float
    proj_size: int

    def forward(self, input: Tensor | PackedSequence, hx: Any = None) -> tuple[Any, Any]:  # noqa: A002
        if self.impl == "fused":
            return super().forward(input, hx)  # type: ignore[misc]
        return self.reference_forward(input, hx)

    def _cell(self, x: Tensor, state: Any, weights: list[Tensor | None]) -> Any:
        if self.mode == "LSTM":
            return lstm_cell(x, state, *weights)
        if self.mode == "GRU":
            return gru_cell(x, state, *weights)
        return rnn_cell(x, state, *weights, "tanh" if self.mode == "RNN_TANH" else "relu")

    def _layer_weights(self, layer: int, reverse: bool) -> list[Tensor | None]:
        sfx = f"_l{layer}{'_reverse' if reverse else ''}"
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if self.bias else [])
        weights: list[Tensor | None] = [getattr(self, n + sfx) for n in names]
        return weights if self.bias else weights + [None, None]

    def _direction(
        self, x: Tensor, state: Any, weights: list[Tensor | None], mask: Tensor | None, reverse: bool
    ) -> tuple[Tensor, Any]:
        """Run one direction of one layer over x (T x N x I); return outputs (T x N x H) and the final state."""
        lstm = self.mode == "LSTM"
        steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
        outputs: list[Tensor] = [x.new_empty(0)] * x.shape[0]
        for t in steps:
            new = self._cell(x[t], state, weights)
            if mask is not None:  # padded steps: keep the state, output zeros (as pad_packed_sequence does)
                m = mask[t].unsqueeze(1)  # N x 1
                new = tuple(torch.where(m, a, b) for a, b in zip(new, state)) if lstm else torch.where(m, new, state)
                h = (new[0] if lstm else new) * m
            else:
                h = new[0] if lstm else new
            state = new
            outputs[t] = h  # N x H
        return torch.stack(outputs), state  # T x N x H

    def reference_forward(self, input: Tensor | PackedSequence, hx: Any = None) -> tuple[Any, Any]:  # noqa: A002
        """The written-out path: for each layer, for each direction, for each step, one cell."""
        if self.proj_size:
            raise ZooError("impl='reference' has no LSTM projection (proj_size); use impl='fused'")
        lstm = self.mode == "LSTM"
        packed = isinstance(input, PackedSequence)
        unbatched = False
        if packed:
            x, lengths = pad_packed_sequence(input)  # T x N x I in the caller's batch order
            t_idx = torch.arange(x.shape[0], device=x.device)
            mask: Tensor | None = t_idx[:, None] < lengths.to(x.device)[None, :]  # T x N
        else:
            unbatched = input.dim() == 2
            x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first else input)
            mask = None
        dirs = 2 if self.bidirectional else 1
        if hx is None:
            zeros = x.new_zeros(self.num_layers * dirs, x.shape[1], self.hidden_size)
            hx = (zeros, zeros) if lstm else zeros
        elif unbatched:
            hx = tuple(s.unsqueeze(1) for s in hx) if lstm else hx.unsqueeze(1)

        finals: list[Any] = []
        layer_input = x  # T x N x I
        for layer in range(self.num_layers):
            outs = []
            for d in range(dirs):
                k = layer * dirs + d
                state = (hx[0][k], hx[1][k]) if lstm else hx[k]
                out, state = self._direction(layer_input, state, self._layer_weights(layer, d == 1), mask, d == 1)
                outs.append(out)
                finals.append(state)
            layer_input = torch.cat(outs, dim=2) if dirs == 2 else outs[0]  # T x N x dirs*H
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)

        h_n = torch.stack([s[0] if lstm else s for s in finals])  # layers*dirs x N x H
        state_n: Any = (h_n, torch.stack([s[1] for s in finals])) if lstm else h_n
        output = layer_input
        if packed:
            order = input.sorted_indices
            if order is not None:
                output, lengths = output.index_select(1, order), lengths[order.cpu()]
            out = pack_padded_sequence(output, lengths.cpu())
            return PackedSequence(out.data, out.batch_sizes, input.sorted_indices, input.unsorted_indices), state_n
        if unbatched:
            output = output.squeeze(1)
            state_n = tuple(s.squeeze(1) for s in state_n) if lstm else state_n.squeeze(1)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, state_n


class RNN(_TimeLoop, nn.RNN):
    """Multi-layer Elman RNN with ``nn.RNN``'s parameters; ``impl`` picks the fused or the written-out path."""

    def __init__(self, *args: Any, impl: str = "fused", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.impl = _check_impl(impl)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, impl={self.impl}"


class LSTM(_TimeLoop, nn.LSTM):
    """Multi-layer LSTM with ``nn.LSTM``'s parameters; ``impl`` picks the fused or the written-out path."""

    def __init__(self, *args: Any, impl: str = "fused", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.impl = _check_impl(impl)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, impl={self.impl}"


class GRU(_TimeLoop, nn.GRU):
    """Multi-layer GRU with ``nn.GRU``'s parameters; ``impl`` picks the fused or the written-out path."""

    def __init__(self, *args: Any, impl: str = "fused", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.impl = _check_impl(impl)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, impl={self.impl}"


@torch.no_grad()
def init_recurrent(rnn: nn.RNNBase, scheme: str = "orthogonal", forget_bias: float = 1.0) -> None:
    """Initialise a recurrent layer's weights in place.

    ``orthogonal``: each gate's H x H block of ``weight_hh`` orthogonal (its singular values are all 1, so
    the linear part of the recurrence neither shrinks nor grows a gradient), input weights as torch.nn,
    biases 0. ``identity`` (IRNN, Le et al. 2015; meant for ``nonlinearity="relu"``): ``weight_hh = I``,
    input weights N(0, 0.001^2), biases 0, so at the start the network copies its state forward.
    ``default``: torch.nn's U(-1/sqrt(H), 1/sqrt(H)) everywhere. In all schemes an LSTM's forget-gate bias
    (rows H..2H of ``bias_ih``) is ``forget_bias``, so it remembers by default.
    """
    if scheme not in INITS:
        raise ZooError(f"init must be one of {', '.join(INITS)}; got {scheme!r}")
    hidden = rnn.hidden_size
    for name, p in rnn.named_parameters():
        if scheme == "default":
            continue
        if name.startswith("weight_hh"):
            for block in p.split(hidden, dim=0):  # one H x H block per gate
                nn.init.eye_(block) if scheme == "identity" else nn.init.orthogonal_(block)
        elif name.startswith("weight_ih") and scheme == "identity":
            nn.init.normal_(p, std=0.001)
        elif name.startswith("bias"):
            nn.init.zeros_(p)
    if rnn.mode == "LSTM" and rnn.bias:
        for name, p in rnn.named_parameters():
            if name.startswith("bias_ih"):
                p[hidden : 2 * hidden].fill_(forget_bias)
            elif name.startswith("bias_hh"):
                p[hidden : 2 * hidden].zero_()  # the forget bias is b_if + b_hf: keep the sum at forget_bias


def as_sequence(x: Tensor, in_channels: int) -> Tensor:
    """What every sequence model reads: N x T x ``in_channels`` floats, or N x T integer tokens, as given;
    an image N x C x H x W becomes H*W steps of C features. Anything else is a ZooError naming the layouts."""
    if x.is_floating_point() and x.dim() == 4 and x.shape[1] == in_channels:
        # An image N x C x H x W is read pixel by pixel in raster order, C features per step: the
        # sequential (pixel) MNIST of Le et al. (2015). data=seq_mnist reads rows, 28 steps instead of 784.
        x = x.flatten(2).transpose(1, 2)  # N x H*W x C
    if x.is_floating_point() and (x.dim() != 3 or x.shape[-1] != in_channels):
        raise ZooError(
            f"expected N x T x {in_channels} float sequences or N x {in_channels} x H x W images; got {tuple(x.shape)}"
        )
    if not x.is_floating_point() and x.dim() != 2:
        raise ZooError(f"expected N x T integer tokens; got {tuple(x.shape)}")
    return x


# --------------------------------------------------------------------------------------------------
# The network: (embedding) -> recurrent layers -> linear head, many-to-one or many-to-many.
# --------------------------------------------------------------------------------------------------
LAYERS: dict[str, type[nn.RNNBase]] = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
OUTPUTS = ("auto", "last", "all")


class RecurrentNet(nn.Module):
    """A recurrent classifier, regressor or language model.

    Inputs are batch-first: float features N x T x ``in_channels`` (digit rows, adding-problem pairs), or
    integer tokens N x T from a vocabulary of ``in_channels`` symbols, embedded (``embedding_dim``) or
    one-hot; an image N x ``in_channels`` x H x W is read as H*W steps of one pixel (sequential MNIST).
    ``output="last"``: one prediction per sequence from the last layer's final state (both directions'
    for a bidirectional net), N x num_classes. ``output="all"``: a prediction per step,
    N x num_classes x T (the layout ``nn.CrossEntropyLoss`` takes). ``"auto"``: ``all`` for token inputs
    (language modelling, copy task), ``last`` for feature inputs. ``tie_weights`` shares the output
    matrix with the embedding (Press & Wolf 2017; Inan et al. 2017).
    """

    def __init__(
        self,
        cell: str,
        num_classes: int,
        in_channels: int,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        nonlinearity: str = "tanh",
        impl: str = "fused",
        init: str = "orthogonal",
        forget_bias: float = 1.0,
        embedding_dim: int | None = None,
        tie_weights: bool = False,
        output: str = "auto",
    ) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ZooError(f"output must be one of {', '.join(OUTPUTS)}; got {output!r}")
        if num_layers < 1 or hidden_size < 1:
            raise ZooError(f"num_layers and hidden_size must be positive; got {num_layers} and {hidden_size}")
        self.cell, self.in_channels, self.num_classes, self.output = cell, in_channels, num_classes, output
        self.embedding = nn.Embedding(in_channels, embedding_dim) if embedding_dim else None
        extra = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        if cell == "rnn" and nonlinearity not in ("tanh", "relu"):
            raise ZooError(f"nonlinearity must be 'tanh' or 'relu'; got {nonlinearity!r}")
        self.rnn = LAYERS[cell](
            embedding_dim or in_channels,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,  # torch.nn's dropout sits between layers only
            bidirectional=bidirectional,
            impl=impl,
            **extra,
        )
        init_recurrent(self.rnn, init, forget_bias)
        self.num_features = hidden_size * (2 if bidirectional else 1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)
        if tie_weights:
            if self.embedding is None or embedding_dim != self.num_features or num_classes != in_channels:
                raise ZooError(
                    "tie_weights needs token inputs with embedding_dim == hidden_size x directions "
                    f"({self.num_features}) and num_classes == vocabulary size; got embedding_dim={embedding_dim}, "
                    f"num_classes={num_classes}, in_channels={in_channels}"
                )
            self.fc.weight = self.embedding.weight

    def _embed(self, x: Tensor) -> Tensor:
        x = as_sequence(x, self.in_channels)
        if x.is_floating_point():
            return x
        if self.embedding is not None:
            return self.embedding(x)  # N x T x E
        return F.one_hot(x.long(), self.in_channels).float()  # N x T x V

    def _run(self, x: Tensor, state: Any = None, lengths: Tensor | None = None) -> tuple[Tensor, Any]:
        x = self._embed(x)  # N x T x I
        if lengths is None:
            return self.rnn(x, state)  # N x T x D*H
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed, state)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out, state

    def forward_features(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """N x D*H from the final state (``last``) or N x T x D*H from every step (``all``)."""
        out, state = self._run(x, lengths=lengths)
        if not self._many_to_many(x):
            h_n = state[0] if isinstance(state, tuple) else state  # layers*D x N x H
            dirs = 2 if self.rnn.bidirectional else 1
            return torch.cat(list(h_n[-dirs:]), dim=1)  # N x D*H
        return out

    def forward_head(self, features: Tensor) -> Tensor:
        logits = self.fc(self.drop(features))  # N x C, or N x T x C
        return logits.transpose(1, 2) if logits.dim() == 3 else logits  # N x C x T

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.forward_head(self.forward_features(x, lengths))

    def forward_with_state(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """Many-to-many with the recurrent state in and out: truncated BPTT and sampling carry it on."""
        out, state = self._run(x, state)
        return self.forward_head(out), state  # N x C x T

    def _many_to_many(self, x: Tensor) -> bool:
        return self.output == "all" or (self.output == "auto" and not x.is_floating_point())

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes)


_SEQ = {"family": "recurrent", "kind": "sequence", "input_size": (28, 28)}


@register_model(paper="Elman, Finding Structure in Time", year=1990, **_SEQ)
def rnn(num_classes: int = 10, in_channels: int = 28, **kwargs: Any) -> RecurrentNet:
    """Elman RNN (``nonlinearity="tanh"`` or ``"relu"``; ``init="identity"`` with ReLU is the IRNN)."""
    return RecurrentNet("rnn", num_classes, in_channels, **kwargs)


@register_model(paper="Hochreiter & Schmidhuber, Long Short-Term Memory", year=1997, **_SEQ)
def lstm(num_classes: int = 10, in_channels: int = 28, **kwargs: Any) -> RecurrentNet:
    """LSTM with a forget gate, forget-gate bias 1."""
    return RecurrentNet("lstm", num_classes, in_channels, **kwargs)


@register_model(paper="Cho et al., Learning Phrase Representations using RNN Encoder-Decoder", year=2014, **_SEQ)
def gru(num_classes: int = 10, in_channels: int = 28, **kwargs: Any) -> RecurrentNet:
    """Gated recurrent unit."""
    return RecurrentNet("gru", num_classes, in_channels, **kwargs)
