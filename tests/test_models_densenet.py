"""DenseNet against its oracles: torchvision's models and weights (new and old key names), torchvision's
parameter counts, and the plain network for the memory-efficient (checkpointed) one."""

from __future__ import annotations

import functools
import re

import pytest
import torch
import torchvision
import yaml
from conftest import ROOT
from torch import nn

import zoo
from zoo.errors import ZooError
from zoo.models import densenet as D
from zoo.registry import build_network, entry

NAMES = ["densenet121", "densenet161", "densenet169", "densenet201"]
HEAVY = {"densenet161", "densenet201"}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@functools.cache
def torchvision_model(name: str) -> nn.Module:
    """torchvision's network with seeded random weights and BN statistics, in eval mode; built once."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


def legacy_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's weights as the original published files hold them: ``norm1`` spelled ``norm.1``, and no
    BN ``num_batches_tracked`` (the files predate PyTorch 0.4.1)."""
    return {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v for k, v in sd.items()
            if not k.endswith("num_batches_tracked")}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in NAMES])
def test_torchvision_weights_give_torchvision_outputs(name: str) -> None:
    tv = torchvision_model(name)
    with torch.device("meta"):
        ours = zoo.create_model(name)
    ours.load_state_dict(tv.state_dict(), strict=True, assign=True)
    ours.eval()
    torch.manual_seed(1)
    # densenet121 at full size; the others at 64x64, which runs every block and transition.
    x = torch.randn(1, 3, 224, 224) if name == "densenet121" else torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), atol=1e-5, rtol=0)
    assert entry(name).torchvision == name


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_and_keys_equal_torchvision(name: str) -> None:
    with torch.device("meta"):
        ours, tv = zoo.create_model(name), getattr(torchvision.models, name)()
    assert n_params(ours) == n_params(tv)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in tv.state_dict().items()]
    if name == "densenet121":
        assert n_params(ours) == 7_978_856  # torchvision's DenseNet121_Weights meta
    assert "features.denseblock1.denselayer1.norm1.weight" in ours.state_dict()


def test_convert_legacy_keys() -> None:
    old = {"features.denseblock1.denselayer1.norm.1.weight": 1, "features.denseblock3.denselayer12.conv.2.weight": 2,
           "features.denseblock1.denselayer1.norm.2.running_var": 3, "features.transition1.norm.weight": 4,
           "classifier.bias": 5}
    assert D.convert_legacy_keys(old) == {
        "features.denseblock1.denselayer1.norm1.weight": 1, "features.denseblock3.denselayer12.conv2.weight": 2,
        "features.denseblock1.denselayer1.norm2.running_var": 3, "features.transition1.norm.weight": 4,
        "classifier.bias": 5}
    new = D.convert_legacy_keys(old)
    assert D.convert_legacy_keys(new) == new  # current keys pass through


@pytest.mark.parametrize("legacy", [False, True], ids=["torchvision_keys", "old_published_keys"])
def test_load_pretrained_reads_torchvision_pth(tmp_path, legacy: bool) -> None:
    tv = torchvision_model("densenet121")
    sd = legacy_state_dict(tv.state_dict()) if legacy else tv.state_dict()
    assert ("features.denseblock1.denselayer1.norm.1.weight" in sd) == legacy
    path = tmp_path / "densenet121.pth"
    torch.save(sd, path)
    model = zoo.load_pretrained(path, name="densenet121")
    assert isinstance(model, D.DenseNet) and not model.training
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tv(x), atol=1e-5, rtol=0)


def _saved_bytes(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The output and the bytes autograd keeps for backward (what checkpointing is meant to shrink)."""
    total = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    return out, total[0]


def test_memory_efficient_gives_the_same_outputs_gradients_and_bn_statistics() -> None:
    torch.manual_seed(0)
    kwargs = dict(growth_rate=12, block_config=(4, 4, 4), num_init_features=24, num_classes=10, stem="cifar")
    plain, efficient = D.DenseNet(**kwargs).train(), D.DenseNet(**kwargs, memory_efficient=True).train()
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    out_p, bytes_p = _saved_bytes(plain, x)
    out_e, bytes_e = _saved_bytes(efficient, x2)
    assert bytes_e < 0.8 * bytes_p  # the concatenations and bottlenecks are not kept
    torch.testing.assert_close(out_e, out_p, atol=1e-6, rtol=0)
    target = torch.randint(0, 10, (4,))
    nn.functional.cross_entropy(out_p, target).backward()
    nn.functional.cross_entropy(out_e, target).backward()
    torch.testing.assert_close(x2.grad, x.grad, atol=1e-6, rtol=1e-5)
    for (k, p), q in zip(plain.named_parameters(), efficient.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-5, msg=k)
    # The recomputation in backward must not move the running statistics a second time (torchvision's does).
    for (k, b), c in zip(plain.named_buffers(), efficient.buffers()):
        assert torch.equal(b, c), k


def test_memory_efficient_in_eval_mode_with_gradients() -> None:
    torch.manual_seed(0)
    plain = zoo.create_model("densenet121", num_classes=10, stem="cifar").eval()
    efficient = zoo.create_model("densenet121", num_classes=10, stem="cifar", memory_efficient=True).eval()
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 8, 8)
    out_p, out_e = plain(x), efficient(x)
    torch.testing.assert_close(out_e, out_p, atol=1e-6, rtol=0)
    out_p.sum().backward()
    out_e.sum().backward()
    w = "features.denseblock1.denselayer1.conv1.weight"
    torch.testing.assert_close(dict(efficient.named_parameters())[w].grad, dict(plain.named_parameters())[w].grad)


def test_cifar_stem_keeps_the_key_names_and_takes_small_inputs() -> None:
    with torch.device("meta"):
        big = zoo.create_model("densenet121", num_classes=10)
    small = zoo.create_model("densenet121", num_classes=10, in_channels=1, stem="cifar").eval()
    # The authors' CIFAR stem is a bare convolution: no norm0 (nor relu0, pool0); every other key is the same.
    assert [k for k in big.state_dict() if not k.startswith("features.norm0.")] == list(small.state_dict())
    assert small.features.conv0.kernel_size == (3, 3) and small.features.conv0.stride == (1, 1)
    assert list(dict(small.features.named_children()))[:2] == ["conv0", "denseblock1"]
    with torch.no_grad():
        assert small.forward_features(torch.randn(2, 1, 28, 28)).shape == (2, 1024, 3, 3)
        assert small(torch.randn(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("stem,minimum", [("imagenet", 32), ("cifar", 8)])
def test_too_small_input_raises_before_any_conv(stem: str, minimum: int) -> None:
    m = zoo.create_model("densenet121", num_classes=10, stem=stem).eval()
    calls = []
    m.features.conv0.register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(ZooError, match=f"at least {minimum}x{minimum} pixels; got {minimum - 1}x{minimum - 1}"):
        m(torch.randn(1, 3, minimum - 1, minimum - 1))
    assert calls == []
    with torch.no_grad():
        assert m(torch.randn(1, 3, minimum, minimum)).shape == (1, 10)
    with pytest.raises(ZooError, match="valid: imagenet, cifar"):
        zoo.create_model("densenet121", stem="small")


def test_forward_features_head_reset_classifier_and_init() -> None:
    torch.manual_seed(0)
    m = zoo.create_model("densenet121", num_classes=10, stem="cifar").eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        feats = m.forward_features(x)
        assert feats.min() >= 0  # norm5 then ReLU, as torchvision's forward
        torch.testing.assert_close(m.forward_head(feats), m(x))
    m.reset_classifier(5)
    assert m(x).shape == (2, 5) and torch.all(m.classifier.bias == 0)
    w = m.features.denseblock4.denselayer16.conv1.weight  # 128 x 992 x 1 x 1: fan_out 128
    assert abs(w.std().item() / (2 / 128) ** 0.5 - 1) < 0.02
    bns = [b for b in m.modules() if isinstance(b, nn.BatchNorm2d)]
    assert all(torch.all(b.weight == 1) and torch.all(b.bias == 0) for b in bns)


def test_model_configs_build_every_densenet() -> None:
    for name in NAMES:
        cfg = yaml.safe_load((ROOT / "configs" / "model" / f"{name}.yaml").read_text())
        assert cfg["name"] == name and cfg["defaults"] == ["_base"] and cfg["stem"] == "auto"
        arch = {k: v for k, v in cfg.items() if k != "defaults"}
        with torch.device("meta"):
            small, large = build_network(arch, 10, 1, image_size=28), build_network(arch, 10, 3, image_size=224)
        assert small.stem == "cifar" and small.features.conv0.in_channels == 1 and large.stem == "imagenet"


# -- zoo's CIFAR stem before 2026-12-01 (conv0-norm0-relu0), kept for the checkpoints trained with it ----------


def small_densenet(**kwargs: object) -> D.DenseNet:
    """A DenseNet-BC of three 4-layer blocks (k=12), BN statistics and affine parameters seeded, in eval mode."""
    torch.manual_seed(0)
    net = D.DenseNet(12, (4, 4, 4), 24, num_classes=10, stem="cifar", **kwargs)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    return net.eval()


def test_stem_norm_builds_the_old_cifar_stem_conv_bn_relu_exactly() -> None:
    old, bare = small_densenet(stem_norm=True), small_densenet()
    assert list(dict(old.features.named_children()))[:4] == ["conv0", "norm0", "relu0", "denseblock1"]
    assert old.features.conv0.kernel_size == (3, 3) and old.features.conv0.stride == (1, 1)
    # the default CIFAR stem is the bare conv; the old one adds norm0's keys after conv0 and nothing else
    assert "features.norm0.weight" not in bare.state_dict()
    keys = [k for k in old.state_dict() if not k.startswith("features.norm0.")]
    assert keys == list(bare.state_dict())
    assert list(old.state_dict())[1:6] == [f"features.norm0.{s}" for s in
                                           ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    # oracle: the bare-stem network with the same weights, its conv0 followed by that BN and a ReLU by hand
    bare.load_state_dict({k: v for k, v in old.state_dict().items() if k in bare.state_dict()})
    bare.features.conv0 = nn.Sequential(old.features.conv0, old.features.norm0, nn.ReLU())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(old(x), bare(x), atol=0, rtol=0)
        assert not torch.allclose(old(x), small_densenet()(x), atol=1e-3)  # the BN-ReLU does change the outputs


def test_stem_norm_default_is_each_stems_own_rule_and_the_value_is_checked() -> None:
    with torch.device("meta"):
        imagenet = zoo.create_model("densenet121")
        cifar = zoo.create_model("densenet_bc_100_12")
        old = zoo.create_model("densenet_bc_100_12", stem_norm=True)
        same = zoo.create_model("densenet121", stem_norm=True)
    assert list(dict(imagenet.features.named_children()))[:4] == ["conv0", "norm0", "relu0", "pool0"]
    assert list(dict(cifar.features.named_children()))[:2] == ["conv0", "denseblock1"]
    assert list(dict(old.features.named_children()))[:4] == ["conv0", "norm0", "relu0", "denseblock1"]
    assert [(k, v.shape) for k, v in same.state_dict().items()] == \
        [(k, v.shape) for k, v in imagenet.state_dict().items()]
    with pytest.raises(ZooError, match="stem_norm must be true, false or null; got 'yes'"):
        zoo.create_model("densenet_bc_100_12", stem_norm="yes")


def test_old_cifar_stem_traces_with_fx_and_keeps_its_input_check() -> None:
    from torchvision.models.feature_extraction import create_feature_extractor

    with torch.device("meta"):
        net = zoo.create_model("densenet_bc_100_12", num_classes=10, stem_norm=True).eval()
    extractor = create_feature_extractor(net, return_nodes={"features.relu0": "stem", "classifier": "out"})
    with torch.device("meta"):
        out = extractor(torch.empty(1, 3, 16, 16))
        assert out["stem"].shape == (1, 24, 16, 16) and out["out"].shape == (1, 10)
        with pytest.raises(ZooError, match="at least 8x8"):
            extractor(torch.empty(1, 3, 7, 7))


@pytest.mark.parametrize("model,image_size,added", [
    ({"name": "densenet121", "stem": "auto"}, 28, {"stem_norm": True}),  # `stem: auto` below 64 px: cifar
    ({"name": "densenet121", "stem": "cifar", "stem_norm": None}, None, {"stem_norm": True}),
    ({"name": "densenet_bc_100_12"}, None, {"stem_norm": True}),  # the builder's default stem: cifar
    ({"name": "densenet121", "stem": "auto"}, 224, {}),  # the ImageNet stem has its norm0 anyway
    ({"name": "densenet121"}, None, {}),
    ({"name": "densenet_bc_100_12", "stem_norm": False}, None, {}),  # a value the config sets is kept
])
def test_options_for_weights_reads_the_old_stem_off_the_keys(model: dict, image_size: int | None,
                                                             added: dict) -> None:
    from zoo.registry import options_for_weights

    assert entry(model["name"]).options_from_weights is D.stem_options  # the fact lives on the registry entry
    with_norm0 = {"features.conv0.weight": torch.zeros(1), "features.norm0.weight": torch.zeros(1)}
    assert options_for_weights(model, with_norm0, image_size) == {**model, **added}
    assert options_for_weights(model, {"features.conv0.weight": torch.zeros(1)}, image_size) == model
    assert options_for_weights({"name": "resnet18", "stem": "cifar"}, with_norm0) == {"name": "resnet18",
                                                                                     "stem": "cifar"}
