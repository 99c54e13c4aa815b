"""Attention against torch.nn: reference (head by head) == fused == nn.MultiheadAttention / nn.TransformerEncoderLayer,
outputs and gradients, with and without padding and causal masks; state dicts move both ways; dropout."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from zoo.errors import ZooError
from zoo.models.attention import MultiheadAttention, causal_mask
from zoo.models.transformer import TransformerEncoderLayer

E, H, N, L, S = 8, 2, 3, 5, 4
MASKS = ("none", "padding", "causal", "float", "padding+causal")


def _masks(kind: str, length: int, source: int) -> dict:
    """Keyword masks for nn.MultiheadAttention's call; one padded key in two of the sequences."""
    kw: dict = {}
    if "padding" in kind:
        pad = torch.zeros(N, source, dtype=torch.bool)
        pad[0, -1] = pad[2, -2:] = True
        kw["key_padding_mask"] = pad
    if "causal" in kind:
        kw["attn_mask"] = causal_mask(length)
    if kind == "float":
        kw["attn_mask"] = torch.linspace(-2, 1, length * source, dtype=torch.float64).view(length, source)
    return kw


def _run(module: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kw: dict, self_attention: bool):
    leaves = [t.clone().requires_grad_() for t in ((q,) if self_attention else (q, k, v))]
    args = leaves * 3 if self_attention else leaves
    out = module(*args, **kw)[0]
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    (out * w).sum().backward()
    grads = [t.grad for t in leaves] + [p.grad for p in module.parameters()]
    return out, grads


@pytest.mark.parametrize("kind,self_attention", list(itertools.product(MASKS, (True, False))))
def test_reference_fused_and_torch_agree(kind: str, self_attention: bool) -> None:
    """Same outputs and gradients (inputs and every parameter) from the three, to 1e-10 in float64."""
    torch.manual_seed(0)
    ref = MultiheadAttention(E, H, impl="reference").double()
    fused = MultiheadAttention(E, H, impl="fused").double()
    theirs = nn.MultiheadAttention(E, H, batch_first=True).double()
    nn.init.normal_(ref.in_proj_bias)
    nn.init.normal_(ref.out_proj.bias)
    fused.load_state_dict(ref.state_dict())
    theirs.load_state_dict(ref.state_dict())  # strict: nn.MultiheadAttention's names and shapes
    source = L if self_attention or "causal" in kind else S
    q = torch.randn(N, L, E, dtype=torch.float64)
    k, v = torch.randn(N, source, E, dtype=torch.float64), torch.randn(N, source, E, dtype=torch.float64)
    kw = _masks(kind, L, source)
    out_t, grads_t = _run(theirs, q, k, v, {**kw, "need_weights": False}, self_attention)
    for ours in (ref, fused):
        out, grads = _run(ours, q, k, v, kw, self_attention)
        torch.testing.assert_close(out, out_t, atol=1e-10, rtol=0)
        for a, b in zip(grads, grads_t):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    if "causal" in kind and "padding" not in kind:  # is_causal=True is the same as the explicit mask
        out_c, grads_c = _run(fused, q, k, v, {"is_causal": True}, self_attention)
        torch.testing.assert_close(out_c, out_t, atol=1e-10, rtol=0)


def test_attention_weights_match_and_state_dicts_move_both_ways() -> None:
    torch.manual_seed(1)
    theirs = nn.MultiheadAttention(E, H, batch_first=True)
    ours = MultiheadAttention(E, H)
    ours.load_state_dict(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(N, L, E)
    pad = torch.zeros(N, L, dtype=torch.bool)
    pad[1, -2:] = True
    out_a, w_a = ours(x, x, x, key_padding_mask=pad, need_weights=True)
    out_b, w_b = theirs(x, x, x, key_padding_mask=pad, need_weights=True)
    torch.testing.assert_close(out_a, out_b, atol=1e-6, rtol=0)
    torch.testing.assert_close(w_a, w_b, atol=1e-6, rtol=0)  # averaged over heads, as torch.nn does
    assert torch.all(w_a[1, :, -2:] == 0)  # padded keys get no weight
    with pytest.raises(ZooError, match="divisible"):
        MultiheadAttention(10, 3)


@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_attention_dropout_is_unbiased_and_off_in_eval(impl: str) -> None:
    """Dropout on the attention weights: off in eval mode; in training, the mean over 4000 draws (one batch of
    copies) is the dropout-free output, and single draws differ from it."""
    torch.manual_seed(2)
    m = MultiheadAttention(E, H, dropout=0.5, impl=impl)
    x = torch.randn(1, L, E).expand(4000, L, E)
    with torch.no_grad():
        clean = m.eval()(x[:1], x[:1], x[:1])[0]
        assert torch.equal(m(x[:1], x[:1], x[:1])[0], clean)
        noisy = m.train()(x, x, x)[0]
    assert (noisy[0] - clean[0]).abs().max() > 0.05
    torch.testing.assert_close(noisy.mean(0), clean[0], atol=0.05, rtol=0)


@pytest.mark.parametrize("norm_first,activation,kind", list(itertools.product((False, True), ("relu", "gelu"),
                                                                              ("none", "padding", "causal"))))
def test_encoder_layer_matches_torch(norm_first: bool, activation: str, kind: str) -> None:
    """Our TransformerEncoderLayer (both attention paths) loads nn.TransformerEncoderLayer's state dict strictly
    and gives its outputs and gradients."""
    torch.manual_seed(3)
    theirs = nn.TransformerEncoderLayer(E, H, 16, dropout=0.0, activation=activation, batch_first=True,
                                        norm_first=norm_first).double()
    x = torch.randn(N, L, E, dtype=torch.float64)
    kw = _masks(kind, L, L)
    tkw = {"src_key_padding_mask": kw.get("key_padding_mask"), "src_mask": kw.get("attn_mask")}
    xt = x.clone().requires_grad_()
    out_t = theirs(xt, **tkw)
    out_t.pow(2).sum().backward()
    for impl in ("reference", "fused"):
        ours = TransformerEncoderLayer(E, H, 16, dropout=0.0, activation=activation, norm_first=norm_first,
                                       impl=impl).double()
        ours.load_state_dict(theirs.state_dict())
        xo = x.clone().requires_grad_()
        out = ours(xo, **tkw)
        out.pow(2).sum().backward()
        torch.testing.assert_close(out, out_t, atol=1e-10, rtol=0)
        torch.testing.assert_close(xo.grad, xt.grad, atol=1e-10, rtol=0)
        for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
            torch.testing.assert_close(p.grad, q.grad, atol=1e-10, rtol=0, msg=name)
