"""ViT and Swin against torchvision: strict state-dict loads, outputs within 1e-5, parameter counts, the
reference attention path, resampled position embeddings, the CIFAR ViT's published size, and the stats note.

torchvision's random-initialised models are the oracles; ours are built on the meta device and take the
oracle's tensors (``assign=True``), so only one side pays the initialisation.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import zoo
from zoo.errors import ZooError
from zoo.registry import entry
from zoo.stats import model_table

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def oracle(name: str, **kwargs) -> nn.Module:
    """torchvision's model, seeded, with a random (not zero) ViT head so the outputs say something."""
    torch.manual_seed(0)
    m = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
    for p in m.parameters():
        if p.abs().sum() == 0:  # ViT's zero head and class token, Swin's zero biases
            nn.init.normal_(p, std=0.02)
    return m


def ours_from(state_dict: dict, name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        m = zoo.create_model(name, **kwargs)
    m.load_state_dict(state_dict, strict=True, assign=True)
    return m.eval()


# (name, input side, batch): the published networks at their own resolution
PARITY = [("vit_b_16", 224, 1), ("swin_t", 224, 2)]  # vit_b_32: in the resampling test below


@pytest.mark.parametrize("name,side,batch", PARITY)
def test_torchvision_weights_load_strictly_and_give_its_outputs(name: str, side: int, batch: int) -> None:
    theirs = oracle(name)
    ours = ours_from(theirs.state_dict(), name)
    x = torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    assert b.abs().max() > 0.1  # a real signal, not a zero head
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # and back: torchvision takes our state dict strictly
    theirs.load_state_dict(ours.state_dict(), strict=True)


@pytest.mark.parametrize("name,params", [("vit_b_16", 86_567_656), ("vit_b_32", 88_224_232),
                                         ("vit_l_16", 304_326_632), ("swin_t", 28_288_354)])
def test_parameter_counts_and_keys_are_torchvision(name: str, params: int) -> None:
    """torchvision's published parameter counts; every key and shape of its state dict (vit_l_16 on shapes only:
    the meta device builds both 300M-parameter models without memory or arithmetic)."""
    with torch.device("meta"):
        ours, theirs = zoo.create_model(name), getattr(torchvision.models, name)()
        out = ours(torch.empty(2, 3, 224, 224))
    assert sum(p.numel() for p in ours.parameters()) == params
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    assert out.shape == (2, 1000)
    assert entry(name).torchvision == name


def test_vit_b_32_at_224_and_resampled_to_64_matches_torchvision() -> None:
    """ViT-B/32 at 224; then at 64x64, where ours resamples the 224 position embeddings at run time and
    torchvision is built for 64 with its own ``interpolate_embeddings`` of the same weights."""
    from torchvision.models.vision_transformer import interpolate_embeddings

    theirs = oracle("vit_b_32")
    ours = ours_from(theirs.state_dict(), "vit_b_32")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=0)
    with torch.device("meta"):
        theirs64 = torchvision.models.vit_b_32(weights=None, image_size=64)
    theirs64.load_state_dict(interpolate_embeddings(64, 32, theirs.state_dict()), assign=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs64.eval()(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["vit_lite_7_4", "swin_t"])
def test_reference_attention_path_gives_the_same_outputs(name: str) -> None:
    torch.manual_seed(0)
    fused = zoo.create_model(name, num_classes=10).eval()
    head = fused.heads.head if name.startswith("vit") else fused.head
    nn.init.normal_(head.weight, std=0.02)  # ViT's head starts at zero
    ref = ours_from(fused.state_dict(), name, num_classes=10, impl="reference")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), fused(x), atol=1e-5, rtol=0)


def test_vit_lite_is_the_published_cifar_vit_and_the_cifar_stem() -> None:
    """ViT-Lite-7/4 (Hassani et al. 2021, Table 1): 3.72M parameters at 10 classes; the cifar stem of ViT-B/16
    embeds 4x4 patches (64 tokens + the class token)."""
    m = zoo.create_model("vit_lite_7_4", num_classes=10)
    assert round(sum(p.numel() for p in m.parameters()) / 1e6, 2) == 3.72
    with torch.device("meta"):
        b = zoo.create_model("vit_b_16", num_classes=10, stem="cifar")
        assert b.forward_features(torch.empty(2, 3, 32, 32)).shape == (2, 65, 768)
        with pytest.raises(ZooError, match="multiples of 16"):
            zoo.create_model("vit_b_16")(torch.empty(1, 3, 40, 40))
    with pytest.raises(ZooError, match="stem"):
        zoo.create_model("vit_lite_7_4", stem="tiny")


def test_stats_say_what_the_receptive_field_is() -> None:
    row = model_table("vit_b_16").splitlines()[-1]
    assert "| whole image after the first attention layer (16x16 patch before it) |" in row
    assert "| 17.56 G |" in row  # torchvision's documented 17.56 GFLOPS (multiply-adds)
    with torch.device("meta"):
        swin = zoo.create_model("swin_t")
    assert swin.receptive_field_note.startswith("28x28 px window after the first attention layer")
