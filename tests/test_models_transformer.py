"""The transformer sequence model: every sequence layout, causality, the context carried as state, the
position codes, reference == fused, nn.TransformerEncoder's arithmetic, and learning on each task."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import zoo
from zoo.errors import ZooError
from zoo.models.transformer import TransformerNet, sinusoidal_positions
from zoo.training.tasks import LanguageModelTask

SMALL = {"d_model": 16, "num_heads": 2, "num_layers": 2, "dropout": 0.0}


def test_every_sequence_layout() -> None:
    """Digit rows, pixels, adding pairs (many-to-one), copy tokens (one prediction per step)."""
    torch.manual_seed(0)
    rows = zoo.create_model("transformer", num_classes=10, in_channels=28, **SMALL)
    assert rows(torch.randn(3, 28, 28)).shape == (3, 10)
    pixels = zoo.create_model("transformer", num_classes=10, in_channels=1, **SMALL)
    assert pixels(torch.randn(2, 784, 1)).shape == (2, 10)
    assert pixels(torch.randn(2, 1, 28, 28)).shape == (2, 10)  # an image is read pixel by pixel
    adding = zoo.create_model("transformer", num_classes=1, in_channels=2, **SMALL)
    assert adding(torch.rand(4, 50, 2)).shape == (4, 1)
    copy = zoo.create_model("transformer", num_classes=9, in_channels=10, **SMALL)
    assert copy(torch.randint(0, 10, (4, 40))).shape == (4, 9, 40)
    with pytest.raises(ZooError, match="0..9"):
        copy(torch.full((1, 5), 10))
    with pytest.raises(ZooError, match="max_len"):
        zoo.create_model("transformer", num_classes=1, in_channels=2, max_len=8, **SMALL)(torch.rand(1, 9, 2))
    with pytest.raises(ZooError, match="N x T x 2"):
        adding(torch.rand(4, 50, 3))


def test_token_embedding_is_the_linear_map_of_the_one_hot() -> None:
    m = zoo.create_model("transformer", num_classes=5, in_channels=5, **SMALL).eval()
    tokens = torch.randint(0, 5, (2, 7))
    with torch.no_grad():
        one_hot = nn.functional.one_hot(tokens, 5).float()
        torch.testing.assert_close(m(tokens), m.forward_head(m.encode(one_hot, causal=False)), atol=1e-6, rtol=0)


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_language_model_is_causal_and_carries_its_context(positions: str) -> None:
    """A change at step t leaves the logits of earlier steps alone; a window run in two chunks, the first
    passed on as the state, gives the logits of the whole window."""
    torch.manual_seed(1)
    m = zoo.create_model("transformer", num_classes=6, in_channels=6, positions=positions, **SMALL).eval()
    x = torch.randint(0, 6, (2, 12))
    y = x.clone()
    y[:, 7] = (y[:, 7] + 1) % 6
    with torch.no_grad():
        a, state = m.forward_with_state(x)
        b, _ = m.forward_with_state(y)
        assert a.shape == (2, 6, 12) and torch.equal(state, x)
        torch.testing.assert_close(a[..., :7], b[..., :7], atol=1e-6, rtol=0)
        assert not torch.allclose(a[..., 7:], b[..., 7:])
        first, state = m.forward_with_state(x[:, :5])
        second, state = m.forward_with_state(x[:, 5:], state)
        torch.testing.assert_close(torch.cat([first, second], -1), a, atol=1e-6, rtol=0)
        short = TransformerNet(6, 6, max_len=4, positions=positions, **SMALL).eval()
        _, state = short.forward_with_state(x[:, :3])
        _, state = short.forward_with_state(x[:, 3:6], state)
        assert torch.equal(state, x[:, 2:6])  # the context keeps the last max_len steps


def test_position_codes() -> None:
    """The paper's formula by hand; learned positions are parameters, sinusoids are not stored."""
    pe = sinusoidal_positions(50, 8)
    p, i = 13, 2
    assert pe[p, 2 * i].item() == pytest.approx(math.sin(p / 10000 ** (2 * i / 8)), abs=1e-6)
    assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(p / 10000 ** (2 * i / 8)), abs=1e-6)
    sin = zoo.create_model("transformer", num_classes=2, in_channels=3, **SMALL)
    learned = zoo.create_model("transformer", num_classes=2, in_channels=3, positions="learned", **SMALL)
    assert "pos_embedding" not in sin.state_dict() and "pos_embedding" in dict(learned.named_parameters())
    with pytest.raises(ZooError, match="positions"):
        zoo.create_model("transformer", positions="rotary")


def test_reference_path_and_torch_encoder_give_the_same_outputs() -> None:
    """impl=reference == impl=fused; and the stack of layers == nn.TransformerEncoder with the same weights."""
    torch.manual_seed(2)
    fused = zoo.create_model("transformer", num_classes=3, in_channels=4, activation="relu", **SMALL).eval()
    ref = zoo.create_model("transformer", num_classes=3, in_channels=4, activation="relu", impl="reference",
                           **SMALL).eval()
    ref.load_state_dict(fused.state_dict())
    x = torch.randn(2, 9, 4)
    theirs = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 64, 0.0, batch_first=True, norm_first=True),
                                   2, enable_nested_tensor=False).eval()
    theirs.load_state_dict({k: v for k, v in fused.state_dict().items()
                            if k.startswith("layers.")})
    with torch.no_grad():
        torch.testing.assert_close(ref(x), fused(x), atol=1e-5, rtol=0)
        h = fused.drop(fused.input_proj(x) + fused.pos_embedding[:, :9])
        torch.testing.assert_close(fused.norm(theirs(h)), fused.encode(x, causal=False), atol=1e-5, rtol=0)
        mask = nn.Transformer.generate_square_subsequent_mask(9)
        torch.testing.assert_close(fused.norm(theirs(h, mask=mask, is_causal=True)), fused.encode(x, causal=True),
                                   atol=1e-5, rtol=0)


def _fits(m: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn, steps: int = 60) -> tuple[float, float]:
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first = last = 0.0
    for i in range(steps):
        loss = loss_fn(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first, last = (loss.item(), loss.item()) if i == 0 else (first, loss.item())
    return first, last


def test_learns_each_kind_of_task() -> None:
    """A fixed small batch of each task is fitted: regression (adding), classification (rows), tagging (copy),
    and language modelling through LanguageModelTask with truncated windows (bptt) and sampling."""
    torch.manual_seed(3)
    x = torch.rand(16, 20, 2)
    first, last = _fits(zoo.create_model("transformer", num_classes=1, in_channels=2, **SMALL), x, x[..., 0].sum(1),
                        lambda o, t: nn.functional.mse_loss(o.squeeze(-1), t))
    assert last < 0.2 * first
    first, last = _fits(zoo.create_model("transformer", num_classes=4, in_channels=28, **SMALL),
                        torch.randn(8, 28, 28), torch.arange(8) % 4, nn.functional.cross_entropy)
    assert last < 0.1 * first
    tokens = torch.randint(1, 9, (8, 16))
    first, last = _fits(zoo.create_model("transformer", num_classes=9, in_channels=10, **SMALL), tokens, tokens,
                        nn.functional.cross_entropy)
    assert last < 0.1 * first
    vocab = list("abc \n")
    task = LanguageModelTask(model={"name": "transformer", **SMALL}, num_classes=5, in_channels=5,
                             optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 3e-3},
                             data={"config": {"bptt": 6}, "facts": {"class_names": vocab}})
    task.log = lambda *a, **k: None
    text = torch.tensor([[0, 1, 2, 3] * 6])  # "abc " repeated: predictable from the context
    opt = torch.optim.Adam(task.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = task.training_step((text[:, :-1].repeat(4, 1), text[:, 1:].repeat(4, 1)), 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    assert task.sample("ab", length=8, temperature=0) == "abc abc ab"
