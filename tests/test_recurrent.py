"""Recurrent cells and layers against torch.nn: outputs, final states and gradients; fused == reference; init."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import zoo
from zoo.errors import ZooError
from zoo.models.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RecurrentNet, RNNCell, init_recurrent

# (our layer, torch.nn's layer, extra kwargs)
KINDS = {
    "rnn_tanh": (RNN, nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (RNN, nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (LSTM, nn.LSTM, {}),
    "gru": (GRU, nn.GRU, {}),
}
IN, HID, T, N = 3, 4, 5, 3


def _pair(kind: str, **kwargs) -> tuple[nn.Module, nn.Module]:
    """Our reference layer and torch.nn's, the latter loaded strictly from the former's state dict."""
    ours_cls, ref_cls, extra = KINDS[kind]
    ours = ours_cls(IN, HID, impl="reference", **extra, **kwargs).double()
    ref = ref_cls(IN, HID, **extra, **kwargs).double()
    ref.load_state_dict(ours.state_dict())  # strict: same names and shapes
    return ours, ref


def _states(s) -> tuple[torch.Tensor, ...]:
    return s if isinstance(s, tuple) else (s,)


def _check_against_torch(ours: nn.Module, ref: nn.Module, make_input, hx=None) -> None:
    """Forward both, backpropagate the same function of outputs and states, compare everything to 1e-5."""
    xa, xb = make_input(), make_input()
    out_a, st_a = ours(xa[0], hx)
    out_b, st_b = ref(xb[0], hx)
    data = (lambda o: o.data) if isinstance(out_a, nn.utils.rnn.PackedSequence) else (lambda o: o)
    torch.testing.assert_close(data(out_a), data(out_b), atol=1e-5, rtol=0)
    for a, b in zip(_states(st_a), _states(st_b)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    w = torch.linspace(-1, 1, data(out_a).numel(), dtype=torch.float64).view_as(data(out_a))
    loss_a = (data(out_a) * w).sum() + sum((s**2).sum() for s in _states(st_a))
    loss_b = (data(out_b) * w).sum() + sum((s**2).sum() for s in _states(st_b))
    loss_a.backward()
    loss_b.backward()
    for (name, pa), pb in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-5, rtol=0, msg=f"gradient of {name}")
    torch.testing.assert_close(xa[1].grad, xb[1].grad, atol=1e-5, rtol=0, msg="gradient of the input")


@pytest.mark.parametrize(
    "kind,layers,bidirectional,batch_first", list(itertools.product(KINDS, (1, 2), (False, True), (False, True)))
)
def test_layer_matches_torch_nn(kind: str, layers: int, bidirectional: bool, batch_first: bool) -> None:
    torch.manual_seed(0)
    ours, ref = _pair(kind, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    x = torch.randn((N, T, IN) if batch_first else (T, N, IN), dtype=torch.float64)

    def make_input():
        leaf = x.clone().requires_grad_()
        return leaf, leaf

    dirs = 2 if bidirectional else 1
    h0 = torch.randn(layers * dirs, N, HID, dtype=torch.float64)
    hx = (h0, torch.randn_like(h0)) if kind == "lstm" else h0
    _check_against_torch(ours, ref, make_input, hx)


@pytest.mark.parametrize("kind,layers,bidirectional", list(itertools.product(KINDS, (1, 2), (False, True))))
def test_packed_variable_lengths_match_torch_nn(kind: str, layers: int, bidirectional: bool) -> None:
    torch.manual_seed(1)
    ours, ref = _pair(kind, num_layers=layers, bidirectional=bidirectional, batch_first=True)
    x = torch.randn(4, 6, IN, dtype=torch.float64)
    lengths = torch.tensor([3, 6, 1, 4])  # unsorted: the packed sequence carries its own order

    def make_input():
        leaf = x.clone().requires_grad_()
        return pack_padded_sequence(leaf, lengths, batch_first=True, enforce_sorted=False), leaf

    _check_against_torch(ours, ref, make_input)


@pytest.mark.parametrize("kind", list(KINDS))
def test_unbatched_input_matches_torch_nn(kind: str) -> None:
    torch.manual_seed(2)
    ours, ref = _pair(kind, num_layers=2)
    x = torch.randn(T, IN, dtype=torch.float64)
    out_a, st_a = ours(x)
    out_b, st_b = ref(x)
    torch.testing.assert_close(out_a, out_b, atol=1e-5, rtol=0)
    for a, b in zip(_states(st_a), _states(st_b)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "ours_cls,ref_cls,extra",
    [
        (RNNCell, nn.RNNCell, {"nonlinearity": "tanh"}),
        (RNNCell, nn.RNNCell, {"nonlinearity": "relu"}),
        (LSTMCell, nn.LSTMCell, {}),
        (GRUCell, nn.GRUCell, {}),
    ],  # fmt: skip
)
def test_cells_match_torch_nn_cells(ours_cls, ref_cls, extra) -> None:
    torch.manual_seed(3)
    ours = ours_cls(IN, HID, **extra).double()
    ref = ref_cls(IN, HID, **extra).double()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(N, IN, dtype=torch.float64)
    h = torch.randn(N, HID, dtype=torch.float64)
    state = (h, torch.randn_like(h)) if ours_cls is LSTMCell else h
    for a, b in zip(_states(ours(x, state)), _states(ref(x, state))):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_state_dicts_move_both_ways_and_no_bias() -> None:
    theirs = nn.GRU(IN, HID, num_layers=2, bidirectional=True, bias=False)
    ours = GRU(IN, HID, num_layers=2, bidirectional=True, bias=False, impl="reference")
    ours.load_state_dict(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    assert "weight_hh_l1_reverse" in ours.state_dict() and "bias_ih_l0" not in ours.state_dict()
    x = torch.randn(T, N, IN)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_fused_equals_reference_in_the_model(cell: str) -> None:
    """The registered model gives the same logits and gradients through either path, with and without lengths."""
    torch.manual_seed(4)
    kw = {"hidden_size": 6, "num_layers": 2, "bidirectional": True, "dropout": 0.3}
    fused = zoo.create_model(cell, num_classes=5, in_channels=IN, impl="fused", **kw).eval()
    reference = zoo.create_model(cell, num_classes=5, in_channels=IN, impl="reference", **kw).eval()
    reference.load_state_dict(fused.state_dict())
    x = torch.randn(4, 7, IN)
    lengths = torch.tensor([7, 2, 5, 3])
    for lens in (None, lengths):
        a, b = fused(x, lens), reference(x, lens)
        assert a.shape == (4, 5)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    fused(x, lengths).square().sum().backward()
    reference(x, lengths).square().sum().backward()
    for (name, pa), pb in zip(fused.named_parameters(), reference.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-5, rtol=1e-4, msg=f"gradient of {name}")


def test_padding_does_not_change_a_sequences_result() -> None:
    """With lengths, a short sequence's prediction is the same as running it alone, unpadded."""
    torch.manual_seed(5)
    model = zoo.create_model("lstm", num_classes=3, in_channels=IN, hidden_size=5, bidirectional=True).eval()
    x = torch.randn(2, 6, IN)
    padded = model(x, torch.tensor([6, 4]))
    alone = model(x[1:, :4])
    torch.testing.assert_close(padded[1:], alone, atol=1e-6, rtol=0)


def test_dropout_between_layers_only_in_training() -> None:
    torch.manual_seed(6)
    layer = LSTM(IN, HID, num_layers=2, dropout=0.5, impl="reference")
    x = torch.randn(T, N, IN)
    layer.train()
    assert not torch.allclose(layer(x)[0], layer(x)[0])  # a fresh dropout mask each call
    layer.eval()
    torch.testing.assert_close(layer(x)[0], layer(x)[0])
    single = LSTM(IN, HID, num_layers=1, dropout=0.0, impl="reference").train()
    torch.testing.assert_close(single(x)[0], single(x)[0])  # no dropout after the last layer


def test_orthogonal_init_and_forget_bias() -> None:
    torch.manual_seed(7)
    layer = LSTM(IN, 8, num_layers=2, bidirectional=True)
    init_recurrent(layer, "orthogonal", forget_bias=1.0)
    eye = torch.eye(8)
    for name, p in layer.named_parameters():
        if name.startswith("weight_hh"):
            for block in p.detach().split(8):  # i, f, g, o: each gate's recurrent matrix is orthogonal
                torch.testing.assert_close(block @ block.T, eye, atol=1e-5, rtol=0)
    for sfx in ("_l0", "_l1_reverse"):
        b = getattr(layer, "bias_ih" + sfx).detach() + getattr(layer, "bias_hh" + sfx).detach()
        torch.testing.assert_close(b[8:16], torch.ones(8))  # forget gate: the effective bias is 1
        torch.testing.assert_close(torch.cat([b[:8], b[16:]]), torch.zeros(24))
    model = zoo.create_model("lstm", num_classes=2, in_channels=IN, hidden_size=8)  # the default init
    torch.testing.assert_close(model.rnn.bias_ih_l0.detach()[8:16], torch.ones(8))


def test_irnn_identity_init() -> None:
    """IRNN (Le et al. 2015): ReLU, identity recurrence, zero bias; with zero input it carries h unchanged."""
    torch.manual_seed(8)
    model = zoo.create_model("rnn", num_classes=2, in_channels=IN, hidden_size=6, nonlinearity="relu", init="identity")
    torch.testing.assert_close(model.rnn.weight_hh_l0.detach(), torch.eye(6))
    assert model.rnn.weight_ih_l0.std() < 0.01 and not model.rnn.bias_hh_l0.any()
    h0 = torch.rand(1, 2, 6)
    out, h_n = model.rnn(torch.zeros(2, 50, IN), h0)
    torch.testing.assert_close(h_n, h0)


def test_many_to_many_tied_weights_and_token_inputs() -> None:
    torch.manual_seed(9)
    lm = zoo.create_model("gru", num_classes=11, in_channels=11, hidden_size=8, embedding_dim=8, tie_weights=True)
    assert lm.fc.weight is lm.embedding.weight
    tokens = torch.randint(0, 11, (2, 7))
    assert lm(tokens).shape == (2, 11, 7)  # token inputs: a prediction per step, N x C x T
    logits, state = lm.forward_with_state(tokens[:, :3])
    rest, _ = lm.forward_with_state(tokens[:, 3:], state)  # carrying the state == one pass
    torch.testing.assert_close(torch.cat([logits, rest], dim=2), lm(tokens), atol=1e-6, rtol=0)
    one_hot = zoo.create_model("lstm", num_classes=9, in_channels=10, hidden_size=4)  # copy task: no embedding
    assert one_hot(torch.randint(0, 10, (3, 12))).shape == (3, 9, 12)
    assert one_hot(torch.randn(3, 12, 10)).shape == (3, 9)  # features: one prediction per sequence
    with pytest.raises(ZooError, match="tie_weights"):
        zoo.create_model("lstm", num_classes=11, in_channels=11, hidden_size=8, embedding_dim=6, tie_weights=True)


def test_user_errors_and_registry_facts() -> None:
    with pytest.raises(ZooError, match="impl"):
        zoo.create_model("lstm", num_classes=2, in_channels=3, impl="cudnn")
    with pytest.raises(ZooError, match="nonlinearity"):
        zoo.create_model("rnn", num_classes=2, in_channels=3, nonlinearity="sigmoid")
    with pytest.raises(ZooError, match="float sequences"):
        zoo.create_model("gru", num_classes=2, in_channels=3)(torch.randn(2, 5, 4))
    # Images are read pixel by pixel in raster order (sequential MNIST): the same as the N x H*W x C sequence.
    model = zoo.create_model("gru", num_classes=2, in_channels=3, hidden_size=4)
    image = torch.randn(2, 3, 4, 5)
    torch.testing.assert_close(model(image), model(image.permute(0, 2, 3, 1).reshape(2, 20, 3)))
    info = zoo.model_info("lstm")
    assert info["kind"] == "sequence" and info["input_size"] == (28, 28)
    # Parameter count from torch.nn's own modules: nn.LSTM(28, 128) + nn.Linear(128, 10).
    expected = sum(p.numel() for m in (nn.LSTM(28, 128), nn.Linear(128, 10)) for p in m.parameters())
    assert info["num_params"] == expected
    assert RecurrentNet("gru", 10, 28).rnn.impl == "fused"  # the default path is torch.nn's fused kernel
