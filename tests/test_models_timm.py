"""timm as the oracle: timm's own (randomly initialised) weights copied into zoo's twin give timm's outputs.

For every zoo model that timm also has. Keys are matched by position (both follow the paper's order; zoo's
Inception-v4 / Inception-ResNet-v2 keys are Cadene's, timm's nearly so; VGG's fc6 is a 7x7 convolution in
timm, the same numbers reshaped), except the pre-activation ResNets, whose timm names differ (``stages``,
``blocks``) and whose stem BN sits in timm's first block: :func:`preact_from_timm` maps them by name.

The pre-activation twins are the bottleneck ones only: in timm's ``resnetv2_18/34`` the first block's identity
shortcut reads the stem's raw output, in zoo's (He et al. 2016, "the first activation right after conv1") the
activated one, so the architectures differ there. timm's stem max-pools before that BN-ReLU, which gives the
same numbers as long as the BN scales are positive (they are, at timm's init).
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import zoo

timm = pytest.importorskip("timm")

# zoo name -> (timm name, zoo kwargs, input side); the side is the smallest that takes every code path.
TWINS = {
    "resnet18": ("resnet18", {}, 64),
    "resnet34": ("resnet34", {}, 64),
    "resnet50": ("resnet50", {}, 64),
    "resnet101": ("resnet101", {}, 64),
    "resnet152": ("resnet152", {}, 64),
    "resnext50_32x4d": ("resnext50_32x4d", {}, 64),
    "resnext101_32x8d": ("resnext101_32x8d", {}, 64),
    "resnext101_64x4d": ("resnext101_64x4d", {}, 64),
    "wide_resnet50_2": ("wide_resnet50_2", {}, 64),
    "wide_resnet101_2": ("wide_resnet101_2", {}, 64),
    "preact_resnet50": ("resnetv2_50", {}, 64),
    "preact_resnet101": ("resnetv2_101", {}, 64),
    "preact_resnet152": ("resnetv2_152", {}, 64),
    "densenet121": ("densenet121", {}, 64),
    "densenet161": ("densenet161", {}, 64),
    "densenet169": ("densenet169", {}, 64),
    "densenet201": ("densenet201", {}, 64),
    **{f"vgg{d}{bn}": (f"vgg{d}{bn}", {}, 224) for d in (11, 13, 16, 19) for bn in ("", "_bn")},  # fc6: 7x7 map
    "inception_v3": ("inception_v3", {"aux_logits": False}, 299),
    "inception_v4": ("inception_v4", {}, 299),
    "inception_resnet_v2": ("inception_resnet_v2", {}, 299),
    "mobilenet_v1": ("mobilenetv1_100", {}, 64),
}
FAST = {"resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "preact_resnet50", "densenet121", "vgg11_bn",
        "inception_v3", "inception_v4", "inception_resnet_v2", "mobilenet_v1"}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def real(sd: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    return [(k, v) for k, v in sd.items() if not k.endswith("num_batches_tracked")]


def by_position(theirs: dict[str, torch.Tensor], ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's tensors under zoo's names, pairing the two state dicts in order (shapes must agree up to a reshape)."""
    t, z = real(theirs), real(ours)
    assert len(t) == len(z), f"timm has {len(t)} tensors, zoo {len(z)}"
    out = {}
    for (tk, tv), (zk, zv) in zip(t, z, strict=True):
        assert tv.numel() == zv.numel(), f"{tk} {tuple(tv.shape)} vs {zk} {tuple(zv.shape)}"
        out[zk] = tv.reshape(zv.shape)
    return out


def preact_from_timm(theirs: dict[str, torch.Tensor], ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm ``resnetv2`` names -> zoo's (torchvision-style) pre-activation ResNet names."""
    out = {}
    for k, v in real(theirs):
        k = k.replace("stem.conv.", "conv1.").replace("stages.0.blocks.0.norm1.", "bn1.").replace("head.fc.", "fc.")
        k = re.sub(r"stages\.(\d+)\.blocks\.(\d+)\.", lambda m: f"layer{int(m[1]) + 1}.{m[2]}.", k)
        k = re.sub(r"\.norm(\d)\.", r".bn\1.", k).replace("downsample.conv.", "downsample.0.")
        out[k] = v.reshape(ours[k].shape)
    return out


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in TWINS])
def test_timm_weights_give_timm_outputs(name: str) -> None:
    timm_name, kwargs, side = TWINS[name]
    torch.manual_seed(0)
    theirs = timm.create_model(timm_name, pretrained=False, num_classes=10).eval()
    for m in theirs.modules():  # non-trivial statistics, so a swapped mean/var or a misplaced BN would show
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    with torch.device("meta"):
        ours = zoo.create_model(name, num_classes=10, **kwargs)
    own = ours.state_dict()
    mapped = (preact_from_timm if name.startswith("preact") else by_position)(theirs.state_dict(), own)
    ours.load_state_dict(mapped, strict=False, assign=True)
    missing = [k for k, v in own.items() if k not in mapped and not k.endswith("num_batches_tracked")]
    assert missing == []
    for k, v in ours.state_dict().items():  # the counters (never read in eval mode) were left on meta
        if v.is_meta:
            ours.get_submodule(k.rsplit(".", 1)[0]).num_batches_tracked = torch.tensor(0)
    ours.eval()
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert got.shape == (2, 10)
    scale = expected.abs().max().item()
    torch.testing.assert_close(got, expected, atol=1e-5 * max(scale, 1.0), rtol=1e-5)
