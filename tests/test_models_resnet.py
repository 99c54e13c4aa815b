"""ResNet, ResNeXt, Wide ResNet, pre-activation ResNet and ResNeXt-29 against their oracles.

Oracles: torchvision's own models (same weights -> same outputs, same parameter counts), the papers'
parameter figures, and the algebra of the identity shortcut. The big networks are built once per module;
parameter counts are taken on the meta device, where building costs no memory and no initialisation.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torchvision
import yaml
from conftest import ROOT
from torch import nn

import zoo
from zoo.errors import ZooError
from zoo.models import resnet as R
from zoo.registry import build_network, entry

TORCHVISION_TWINS = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
]
FULL_SIZE = ["resnet18", "resnet50", "resnext50_32x4d"]  # compared at 224x224, batch 1
HEAVY = {"resnet152", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet101_2"}
FAMILIES = ("resnet", "resnext", "wide_resnet", "preact_resnet")
OURS = [n for n in zoo.list_models() if entry(n).family in FAMILIES]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@functools.cache
def torchvision_model(name: str) -> nn.Module:
    """torchvision's network with seeded random weights, in eval mode; built once per test process."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    for m in model.modules():  # non-trivial BN statistics, so a swapped mean/var would show
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


def ours_with_weights(name: str, state_dict: dict[str, torch.Tensor], **kwargs) -> nn.Module:
    """Our network holding ``state_dict`` (built on meta, then the tensors assigned: no wasted init)."""
    with torch.device("meta"):
        model = zoo.create_model(name, **kwargs)
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.eval()


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n
                                  for n in TORCHVISION_TWINS])
def test_torchvision_weights_give_torchvision_outputs(name: str) -> None:
    tv = torchvision_model(name)
    ours = ours_with_weights(name, tv.state_dict())
    torch.manual_seed(1)
    # The heavy ones at 64x64: the same code path (every stage, every downsample), a fraction of the cost.
    x = torch.randn(1, 3, 224, 224) if name in FULL_SIZE else torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = tv(x), ours(x)
    assert got.shape == (x.shape[0], 1000)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert entry(name).torchvision == name


@pytest.mark.parametrize("name", TORCHVISION_TWINS)
def test_parameter_count_equals_torchvision(name: str) -> None:
    with torch.device("meta"):
        ours, tv = zoo.create_model(name), getattr(torchvision.models, name)()
    assert n_params(ours) == n_params(tv)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in tv.state_dict().items()]


def test_published_counts_and_model_info() -> None:
    with torch.device("meta"):
        assert n_params(zoo.create_model("resnet50")) == 25_557_032  # torchvision's ResNet50_Weights meta
        assert n_params(zoo.create_model("resnet18")) == 11_689_512
    info = zoo.model_info("resnet18")
    assert (info["num_params"], info["torchvision"], info["year"], info["min_size"]) == (11_689_512, "resnet18",
                                                                                          2015, 32)


# He et al. 2016 keep the 2015 networks' convolutions and only move BN/ReLU (plus one final BN), so the sizes
# are the 2015 networks' published ones: 11.7M, 21.8M, 25.6M, 44.5M, 60.2M for ResNet-18 ... ResNet-152
# (torchvision's model documentation; neither paper tabulates ImageNet parameter counts).
PREACT_PAPER = {"preact_resnet18": 11.7e6, "preact_resnet34": 21.8e6, "preact_resnet50": 25.6e6,
                "preact_resnet101": 44.5e6, "preact_resnet152": 60.2e6}


@pytest.mark.parametrize("name", sorted(PREACT_PAPER))
def test_preact_parameter_count_within_2_percent_of_paper(name: str) -> None:
    with torch.device("meta"):
        model = zoo.create_model(name)
    assert abs(n_params(model) - PREACT_PAPER[name]) / PREACT_PAPER[name] < 0.02


def test_resnext29_parameter_counts_match_the_paper() -> None:
    """Xie et al. 2016, Table 7 (CIFAR): ResNeXt-29 8x64d has 34.4M parameters, 16x64d 68.1M."""
    with torch.device("meta"):
        m8 = zoo.create_model("resnext29_8x64d", num_classes=10)
        m16 = R.ResNet(R.Bottleneck, [3, 3, 3], num_classes=10, groups=16, width_per_group=64, stem="cifar")
        m32x4 = zoo.create_model("resnext29_32x4d", num_classes=10)
    assert abs(n_params(m8) - 34.4e6) / 34.4e6 < 0.02
    assert abs(n_params(m16) - 68.1e6) / 68.1e6 < 0.02
    # section 5.3: 3x3 conv of 64, three stages of three blocks, 256 -> 512 -> 1024 channels, width C*d first
    for m, width in ((m8, 8 * 64), (m32x4, 32 * 4)):
        assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1) and isinstance(m.maxpool, nn.Identity)
        assert [len(m.layer1), len(m.layer2), len(m.layer3)] == [3, 3, 3] and not hasattr(m, "layer4")
        assert m.layer1[0].conv2.out_channels == width and m.fc.in_features == 1024
    out = zoo.create_model("resnext29_32x4d", num_classes=10)(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)


def test_resnext_splits_the_3x3_into_groups() -> None:
    with torch.device("meta"):
        m = zoo.create_model("resnext101_64x4d")
        w = zoo.create_model("wide_resnet50_2")
    assert (m.layer1[0].conv2.groups, m.layer1[0].conv2.out_channels) == (64, 256)
    assert (w.layer1[0].conv2.groups, w.layer1[0].conv2.out_channels) == (1, 128)


@pytest.mark.parametrize("old_file", [False, True], ids=["current", "pre_0.4.1_without_bn_counters"])
def test_load_pretrained_reads_a_torchvision_pth(tmp_path, old_file: bool) -> None:
    tv = torchvision_model("resnet18")
    path = tmp_path / "resnet18.pth"
    sd = tv.state_dict()
    if old_file:  # the originally published resnet18-5c106cde.pth has no num_batches_tracked
        sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, path)
    model = zoo.load_pretrained(path, name="resnet18")
    assert isinstance(model, R.ResNet) and not model.training
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tv(x), atol=1e-5, rtol=0)


# ---- pre-activation: the identity path carries no non-linearity ----------------------------------------------


def _zero_last_convs(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, R.PreActBasicBlock):
            nn.init.zeros_(m.conv2.weight)
        elif isinstance(m, R.PreActBottleneck):
            nn.init.zeros_(m.conv3.weight)


@pytest.mark.parametrize("block", [R.PreActBasicBlock, R.PreActBottleneck])
def test_preact_block_is_exactly_the_identity_when_its_branch_is_zero(block) -> None:
    torch.manual_seed(0)
    net = R.ResNet(block, [3, 2], num_classes=10, stem="cifar").train()
    x = torch.randn(4, 64 * block.expansion, 8, 8)
    assert (x < 0).float().mean() > 0.4
    stage = net.layer1[1:]  # two blocks with identity shortcuts, stacked
    assert all(b.downsample is None for b in stage)
    assert not torch.allclose(stage(x), x)  # a live branch changes the signal...
    _zero_last_convs(net)
    assert torch.equal(stage(x), x)  # ...a zero one leaves it bit for bit: no ReLU or BN on the identity path
    z = R.ResNet(block, [3, 2], num_classes=10, stem="cifar", zero_init_residual=True).train()
    assert torch.equal(z.layer1[1:](x), x)  # zero_init_residual starts every block as this identity


def test_postactivation_block_is_not_the_identity_on_negative_inputs() -> None:
    """The contrast that makes the test above mean something: ResNet v1 ends in a ReLU after the sum."""
    blk = R.BasicBlock(64, 64).train()
    nn.init.zeros_(blk.bn2.weight)
    x = torch.randn(4, 64, 8, 8)
    torch.testing.assert_close(blk(x), torch.relu(x))
    assert not torch.equal(blk(x), x)


def test_preact_network_ends_in_bn_relu_and_its_first_block_has_no_preactivation() -> None:
    m = zoo.create_model("preact_resnet18", num_classes=10, stem="cifar")
    assert isinstance(m.norm, nn.BatchNorm2d) and m.norm.num_features == 512
    assert isinstance(m.layer1[0].bn1, nn.Identity)  # the stem's BN-ReLU is its pre-activation
    assert isinstance(m.layer2[0].bn1, nn.BatchNorm2d)
    assert all(len(ds) == 1 for ds in (m.layer2[0].downsample, m.layer3[0].downsample))  # conv only, no BN
    feats = m.forward_features(torch.randn(2, 3, 32, 32))
    assert feats.shape == (2, 512, 4, 4) and feats.min() >= 0  # the final ReLU


# ---- small inputs, errors, the building-block API -------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "preact_resnet18", "resnext50_32x4d"])
def test_cifar_stem_keeps_the_key_names(name: str) -> None:
    with torch.device("meta"):
        big, small = zoo.create_model(name, num_classes=10), zoo.create_model(name, num_classes=10, stem="cifar")
    assert list(big.state_dict()) == list(small.state_dict())
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)


@pytest.mark.parametrize("in_channels,size", [(1, 28), (3, 32), (1, 8)])
def test_small_inputs_with_the_cifar_stem(in_channels: int, size: int) -> None:
    m = zoo.create_model("resnet18", num_classes=10, in_channels=in_channels, stem="cifar").eval()
    x = torch.randn(2, in_channels, size, size)
    assert m.forward_features(x).shape == (2, 512, -(-size // 8), -(-size // 8))
    assert m(x).shape == (2, 10)


@pytest.mark.parametrize("stem,minimum", [("imagenet", 32), ("cifar", 8)])
def test_too_small_input_raises_before_any_conv(stem: str, minimum: int) -> None:
    m = zoo.create_model("resnet18", num_classes=10, stem=stem).eval()
    calls = []
    m.conv1.register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(ZooError, match=f"at least {minimum}x{minimum} pixels; got {minimum - 1}x{minimum - 1}"):
        m(torch.randn(1, 3, minimum - 1, minimum - 1))
    assert calls == []
    m(torch.randn(1, 3, minimum, minimum))  # the minimum itself works
    assert calls == [1]


def test_user_mistakes_are_zoo_errors() -> None:
    with pytest.raises(ZooError, match="valid: imagenet, cifar"):
        zoo.create_model("resnet18", stem="tiny")
    with pytest.raises(ZooError, match="groups=1"):
        R.ResNet(R.BasicBlock, [2, 2, 2, 2], groups=32)


def test_forward_features_head_and_reset_classifier() -> None:
    m = zoo.create_model("resnet18", num_classes=10, stem="cifar").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(m.forward_head(m.forward_features(x)), m(x))
    m.reset_classifier(7)
    assert m(x).shape == (2, 7) and m.fc.in_features == 512


def test_kaiming_fan_out_init_and_zero_init_residual() -> None:
    torch.manual_seed(0)
    m = zoo.create_model("resnet50", num_classes=10, zero_init_residual=True)
    w = m.layer4[0].conv2.weight  # 512 x 512 x 3 x 3: fan_out 4608
    assert abs(w.std().item() / (2 / 4608) ** 0.5 - 1) < 0.01
    for blk in m.modules():
        if isinstance(blk, R.Bottleneck):
            assert torch.all(blk.bn3.weight == 0) and torch.all(blk.bn1.weight == 1) and torch.all(blk.bn2.bias == 0)
    plain = zoo.create_model("resnet18", num_classes=10)
    assert all(torch.all(b.bn2.weight == 1) for b in plain.modules() if isinstance(b, R.BasicBlock))


def test_model_configs_build_every_model() -> None:
    for name in OURS:
        cfg = yaml.safe_load((ROOT / "configs" / "model" / f"{name}.yaml").read_text())
        assert cfg["name"] == name and cfg["defaults"] == ["_base"] and cfg["stem"] == "auto"
        arch = {k: v for k, v in cfg.items() if k != "defaults"}
        with torch.device("meta"):
            small, large = build_network(arch, 10, 1, image_size=32), build_network(arch, 10, 3, image_size=224)
        assert small.stem == "cifar" and small.conv1.in_channels == 1 and large.stem == "imagenet"
