"""GoogLeNet, BN-Inception, Inception v3/v4 and Inception-ResNet-v2 against their oracles.

Oracles: torchvision's ``googlenet`` and ``inception_v3`` (same weights -> same outputs, in eval and, with the
auxiliary heads, in training mode), the published parameter counts, a count of BN-Inception computed by hand
from the paper's table, and the cross-entropy of each head added up by hand. Parameter counts and input-size
limits are checked on the meta device, where building costs neither memory nor initialisation.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
import yaml
from conftest import ROOT
from torch import nn
from torch.nn import functional as F

import zoo
from zoo.errors import ZooError
from zoo.models import googlenet as G
from zoo.models.inception_resnet_v2 import InceptionResNetV2A
from zoo.models.layers import AuxLogits
from zoo.registry import build_network, entry
from zoo.training.tasks import ClassificationTask

NAMES = ["googlenet", "inception_v2", "inception_v3", "inception_v4", "inception_resnet_v2"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def on_meta(fn, *args, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return fn(*args, **kwargs)


def calibrate_bn(model: nn.Module, x: torch.Tensor) -> None:
    """Set every BN's running statistics from one batch, so eval activations stay O(1).

    Inception v3's std-0.1 init with identity BN grows the logits to ~1e11, where a float32 comparison to
    1e-5 is meaningless; with calibrated statistics the logits are small and 1e-5 is a real test.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.momentum = 1.0
    model.train()
    aux = getattr(model, "AuxLogits", None)
    model.AuxLogits = None  # torchvision's v3 aux head only fits 299x299 inputs in training mode
    with torch.no_grad():
        model(x)
    model.AuxLogits = aux
    for m in bns:
        m.momentum = 0.1
    model.eval()


# ------------------------------------------------------------------------------------------------ torchvision


def test_googlenet_matches_torchvision_eval_and_train():
    torch.manual_seed(0)
    tv = torchvision.models.googlenet(aux_logits=True, init_weights=True, transform_input=True)
    calibrate_bn(tv, torch.randn(2, 3, 64, 64))
    ours = zoo.create_model("googlenet", transform_input=True)
    ours.load_state_dict(tv.state_dict(), strict=True)
    ours.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected, got = tv(x), ours(x)
    assert isinstance(got, torch.Tensor) and got.shape == (1, 1000)
    assert expected.abs().max() > 1e-3  # a real signal, not zeros
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

    # Training mode: the same main logits and auxiliary logits, with the same dropout masks.
    tv.train(), ours.train()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.manual_seed(1)
        t_out = tv(x)
        torch.manual_seed(1)
        o_out = ours(x)
    assert isinstance(o_out, AuxLogits) and o_out.weights == (0.3, 0.3)
    torch.testing.assert_close(o_out.logits, t_out.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(o_out.aux[0], t_out.aux_logits2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(o_out.aux[1], t_out.aux_logits1, rtol=1e-5, atol=1e-5)


def test_inception_v3_matches_torchvision_at_299():
    torch.manual_seed(0)
    tv = torchvision.models.inception_v3(aux_logits=True, init_weights=True, transform_input=True)
    calibrate_bn(tv, torch.randn(2, 3, 107, 107))
    ours = zoo.create_model("inception_v3", transform_input=True)
    ours.load_state_dict(tv.state_dict(), strict=True)
    ours.eval()
    x = torch.randn(1, 3, 299, 299)
    with torch.no_grad():
        expected, got = tv(x), ours(x)
    assert got.shape == (1, 1000) and expected.abs().max() > 1e-3
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

    # The auxiliary head in training mode (batch statistics), on a 17x17 grid as at 299x299 input.
    tv.AuxLogits.train(), ours.AuxLogits.train()
    feats = torch.randn(2, 768, 17, 17)
    with torch.no_grad():
        torch.testing.assert_close(ours.AuxLogits(feats), tv.AuxLogits(feats), rtol=1e-5, atol=1e-5)
    ours.train()
    with torch.no_grad():  # 224 and smaller grids: torchvision's head fails there, ours pools adaptively
        out = ours(torch.randn(2, 3, 224, 224))
    assert isinstance(out, AuxLogits) and out.weights == (0.4,) and out.aux[0].shape == (2, 1000)


def test_load_pretrained_reads_a_torchvision_googlenet_file(tmp_path):
    """A torchvision state-dict file (with the aux heads, as the published one has) loads strictly."""
    torch.manual_seed(0)
    tv = torchvision.models.googlenet(num_classes=10, aux_logits=True, init_weights=True)
    calibrate_bn(tv, torch.randn(2, 3, 64, 64))
    path = tmp_path / "googlenet.pth"
    torch.save(tv.state_dict(), path)
    ours = zoo.load_pretrained(path, name="googlenet")
    assert not ours.training and ours.fc.out_features == 10
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), rtol=1e-5, atol=1e-5)
    # torchvision drops the aux heads after loading its weights; such a state dict needs aux_logits=False
    bare = {k: v for k, v in tv.state_dict().items() if not k.startswith("aux")}
    assert zoo.load_pretrained(bare, name="googlenet", aux_logits=False).aux1 is None


# ------------------------------------------------------------------------------------------------ parameter counts


def test_googlenet_parameter_counts():
    assert n_params(on_meta(zoo.create_model, "googlenet", aux_logits=False)) == 6_624_904  # torchvision's figure
    tv_aux = on_meta(torchvision.models.googlenet, aux_logits=True, init_weights=True)
    assert n_params(on_meta(zoo.create_model, "googlenet")) == n_params(tv_aux) == 13_004_888


def test_inception_v3_parameter_count():
    assert n_params(on_meta(zoo.create_model, "inception_v3")) == 27_161_264  # torchvision's figure, aux included
    tv = on_meta(torchvision.models.inception_v3, aux_logits=False, init_weights=True)
    assert n_params(on_meta(zoo.create_model, "inception_v3", aux_logits=False)) == n_params(tv)


@pytest.mark.parametrize("name, published", [("inception_v4", 42.7e6), ("inception_resnet_v2", 55.8e6)])
def test_inception_v4_family_parameter_counts(name, published):
    n = n_params(on_meta(zoo.create_model, name))
    assert abs(n - published) / published < 0.02, n


def bn_inception_count_by_hand(num_classes: int = 1000) -> int:
    """BN-Inception's parameters from the widths of Ioffe & Szegedy (2015), Figure 5 (conv without bias + BN)."""

    def conv_bn(cin: int, cout: int, k: int) -> int:
        return cin * cout * k * k + 2 * cout

    total = conv_bn(3, 64, 7) + conv_bn(64, 64, 1) + conv_bn(64, 192, 3)  # conv1, conv2 (reduce + 3x3)
    # rows: #1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool projection (0: max-pool pass-through)
    table = [(64, 64, 64, 64, 96, 32), (64, 64, 96, 64, 96, 64), (0, 128, 160, 64, 96, 0),
             (224, 64, 96, 96, 128, 128), (192, 96, 128, 96, 128, 128), (160, 128, 160, 128, 160, 128),
             (96, 128, 192, 160, 192, 128), (0, 128, 192, 192, 256, 0),
             (352, 192, 320, 160, 224, 128), (352, 192, 320, 192, 224, 128)]
    cin = 192
    for c1, c3r, c3, d3r, d3, proj in table:
        total += conv_bn(cin, c1, 1) if c1 else 0
        total += conv_bn(cin, c3r, 1) + conv_bn(c3r, c3, 3)
        total += conv_bn(cin, d3r, 1) + conv_bn(d3r, d3, 3) + conv_bn(d3, d3, 3)
        total += conv_bn(cin, proj, 1) if proj else 0
        cin = c1 + c3 + d3 + (proj or cin)
    assert cin == 1024
    return total + 1024 * num_classes + num_classes


def test_inception_v2_parameter_count_from_the_papers_table():
    # 11,285,224 at 1000 classes. The paper's text says "13.6 * 10^6 parameters" (section 4.2), which its own
    # Figure 5 does not reproduce; the widths of the table are the definition we follow.
    assert n_params(on_meta(zoo.create_model, "inception_v2")) == bn_inception_count_by_hand() == 11_285_224


# ------------------------------------------------------------------------------------------------ auxiliary heads


def test_aux_heads_only_in_training_and_removable():
    m = zoo.create_model("googlenet", num_classes=10, in_channels=1, stem="cifar")
    x = torch.randn(2, 1, 16, 16)
    out = m.train()(x)
    assert isinstance(out, AuxLogits) and len(out.aux) == 2 and out.weights == (0.3, 0.3)
    assert all(a.shape == (2, 10) for a in out.aux) and out.logits.shape == (2, 10)
    with torch.no_grad():
        assert isinstance(m.eval()(x), torch.Tensor)
    bare = zoo.create_model("googlenet", num_classes=10, in_channels=1, stem="cifar", aux_logits=False)
    assert bare.aux1 is None and bare.aux2 is None
    assert isinstance(bare.train()(x), torch.Tensor)
    assert not any(k.startswith("aux") for k in bare.state_dict())


@pytest.mark.parametrize("name, size, weights", [("googlenet", 16, (0.3, 0.3)), ("inception_v3", 12, (0.4,))])
def test_training_step_adds_weighted_aux_losses(name, size, weights):
    task = ClassificationTask(model={"name": name, "stem": "cifar"}, num_classes=10, in_channels=1,
                              optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1})
    x, y = torch.randn(4, 1, size, size), torch.randint(0, 10, (4,))
    task.train()
    torch.manual_seed(3)  # the same dropout masks in both forwards
    with torch.no_grad():
        out = task.net(x)
    assert isinstance(out, AuxLogits) and out.weights == weights
    by_hand = F.cross_entropy(out.logits, y) + sum(w * F.cross_entropy(a, y) for w, a in zip(weights, out.aux))
    torch.manual_seed(3)
    loss = task.training_step((x, y), 0)  # outside a Trainer: nothing is logged
    assert loss.requires_grad
    torch.testing.assert_close(loss.detach(), by_hand, rtol=1e-5, atol=1e-6)
    assert loss.detach() > F.cross_entropy(out.logits, y) + 1e-3  # the aux terms really count


def test_true_5x5_branch():
    paper = on_meta(zoo.create_model, "googlenet", true_5x5=True)
    default = on_meta(zoo.create_model, "googlenet")
    modules = [m for m in paper.modules() if isinstance(m, G.Inception)]
    assert len(modules) == 9
    assert all(m.branch3[1].conv.kernel_size == (5, 5) and m.branch3[1].conv.padding == (2, 2) for m in modules)
    assert all(m.branch3[1].conv.kernel_size == (3, 3) for m in default.modules() if isinstance(m, G.Inception))
    extra = sum(m.branch3[1].conv.in_channels * m.branch3[1].conv.out_channels * (25 - 9) for m in modules)
    assert n_params(paper) - n_params(default) == extra
    assert list(paper.state_dict()) == list(default.state_dict())
    small = zoo.create_model("googlenet", num_classes=10, in_channels=1, stem="cifar", true_5x5=True).eval()
    with torch.no_grad():
        assert small(torch.randn(1, 1, 28, 28)).shape == (1, 10)


# ------------------------------------------------------------------------------------------------ small inputs


@pytest.mark.parametrize("name", NAMES)
def test_cifar_stem_keeps_keys_and_runs_mnist_and_cifar_sizes(name):
    imagenet = on_meta(zoo.create_model, name)
    cifar = on_meta(zoo.create_model, name, stem="cifar")
    assert list(cifar.state_dict()) == list(imagenet.state_dict())
    assert build_network({"name": name, "stem": "auto"}, 10, 1, image_size=28).stem == "cifar"
    assert on_meta(build_network, {"name": name, "stem": "auto"}, 10, 3, image_size=224).stem == "imagenet"
    # 32x32 RGB: shapes on the meta device; 28x28 grey: a real forward pass
    with torch.no_grad():
        assert on_meta(zoo.create_model, name, num_classes=10, stem="cifar").eval()(
            torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 10)
        torch.manual_seed(0)
        m = zoo.create_model(name, num_classes=10, in_channels=1, stem="cifar").eval()
        out = m(torch.randn(1, 1, 28, 28))
    assert out.shape == (1, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
def test_too_small_input_names_the_minimum(name, stem):
    m = on_meta(zoo.create_model, name, num_classes=10, stem=stem).eval()
    lo = entry(name).min_size_for(stem)  # the one declaration, in register_model
    with torch.no_grad():
        assert m(torch.empty(1, 3, lo, lo, device="meta")).shape == (1, 10)
        if lo > 1:
            with pytest.raises(ZooError, match=f"at least {lo}x{lo}"):
                m(torch.empty(1, 3, lo - 1, lo + 5, device="meta"))
            # the check comes first: without it the network itself fails on this size
            m.min_size = 1
            with pytest.raises(RuntimeError):
                m(torch.empty(1, 3, lo - 1, lo - 1, device="meta"))


def test_bad_stem_and_channels_are_user_errors():
    with pytest.raises(ZooError, match="unknown stem"):
        zoo.create_model("inception_v4", stem="tiny")
    with pytest.raises(ZooError, match="in_channels=3"):
        zoo.create_model("googlenet", in_channels=1, transform_input=True)
    m = on_meta(zoo.create_model, "googlenet", num_classes=10, in_channels=1)
    with pytest.raises(ZooError, match="N x 1 x H x W"):
        m(torch.empty(1, 3, 64, 64, device="meta"))


# ------------------------------------------------------------------------------------------------ interface, init


@pytest.mark.parametrize("name", ["googlenet", "inception_v2", "inception_v3"])
def test_features_head_and_reset_classifier(name):
    torch.manual_seed(0)
    m = zoo.create_model(name, num_classes=10, in_channels=3, stem="cifar").eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(m.forward_head(m.forward_features(x)), m(x))
        assert m.forward_head(m.forward_features(x), pre_logits=True).shape[1] in (1024, 2048)
    m.reset_classifier(5)
    with torch.no_grad():
        assert m(x).shape == (1, 5)
    out = m.train()(torch.randn(2, 3, 16, 16))
    if isinstance(out, AuxLogits):  # the auxiliary heads follow the new class count
        assert all(a.shape == (2, 5) for a in out.aux)


@pytest.mark.parametrize("name, width", [("inception_v4", 1536), ("inception_resnet_v2", 1536)])
def test_v4_family_interface_on_meta(name, width):
    m = on_meta(zoo.create_model, name, num_classes=10, stem="cifar").eval()
    feats = m.forward_features(torch.empty(2, 3, 32, 32, device="meta"))
    assert feats.shape == (2, width, 7, 7)
    assert m.forward_head(feats).shape == (2, 10)
    m.reset_classifier(3)
    assert m.last_linear.out_features == 3


def test_truncated_normal_init():
    torch.manual_seed(0)
    g = zoo.create_model("googlenet", num_classes=10, stem="cifar")  # torchvision's: N(0, 0.01) cut at +-2
    w = g.inception4a.branch2[1].conv.weight
    assert abs(w.std().item() - 0.01) < 0.001
    v3 = zoo.create_model("inception_v3", num_classes=10, stem="cifar")  # std 0.1, aux 0.01 / 0.001
    assert abs(v3.Mixed_6b.branch7x7dbl_2.conv.weight.std().item() - 0.1) < 0.01
    assert abs(v3.AuxLogits.fc.weight.std().item() - 0.001) < 0.0002
    v2 = zoo.create_model("inception_v2", num_classes=10, stem="cifar")  # He-scaled, cut at 2 std
    for conv in (v2.inception4c.branch3[1].conv, v2.inception5b.branch2[1].conv):
        std = math.sqrt(2.0 / conv.weight[0].numel()) / 0.87962566103423978
        w = conv.weight
        assert w.abs().max() <= 2 * std * (1 + 1e-6)
        assert w.abs().max() > 1.9 * std  # truncated, not uniform or a narrower normal
        assert abs(w.std().item() - math.sqrt(2.0 / conv.weight[0].numel())) < 0.05 * w.std().item()


def test_inception_resnet_scaled_residuals():
    """Each Inception-ResNet block adds scale * branch to the identity (Figure 20's 0.1-0.3 scaling)."""
    torch.manual_seed(0)
    block = InceptionResNetV2A(scale=0.17).eval()
    x = torch.randn(1, 320, 5, 5)
    with torch.no_grad():
        branch = block.conv2d(torch.cat([block.branch0(x), block.branch1(x), block.branch2(x)], 1))
        torch.testing.assert_close(block(x), F.relu(x + 0.17 * branch))
    m = on_meta(zoo.create_model, "inception_resnet_v2")
    assert [len(m.repeat), len(m.repeat_1), len(m.repeat_2) + 1] == [10, 20, 10]
    assert {b.scale for b in m.repeat} == {0.17} and {b.scale for b in m.repeat_1} == {0.10}
    assert m.block8.relu is None and m.block8.scale == 1.0  # TF-slim, Cadene and timm: the last one unscaled


# ------------------------------------------------------------------------------------------------ registry, configs


@pytest.mark.parametrize("name", NAMES)
def test_registry_and_config(name):
    e = entry(name)  # zoo.model_info's fields without building the network at 1000 classes
    assert e.family == "inception" and e.kind == "image"
    assert e.input_size == ((3, 224, 224) if name in ("googlenet", "inception_v2") else (3, 299, 299))
    assert e.torchvision == (name if name in ("googlenet", "inception_v3") else None)
    cfg = yaml.safe_load((ROOT / "configs" / "model" / f"{name}.yaml").read_text())
    assert cfg["name"] == name and cfg["defaults"] == ["_base"] and cfg["stem"] == "auto"
    kwargs = {k: v for k, v in cfg.items() if k not in ("defaults", "name", "stem")}
    on_meta(zoo.create_model, name, num_classes=10, **kwargs)  # every key is a real keyword


# ------------------------------------------------------------------------------------------ one network a file


def test_state_dict_keys_survive_the_split_into_one_file_a_network():
    """Names are the oracles': torchvision's Inception v3 (aux head included), timm's Inception-v4 and
    Inception-ResNet-v2 (Cadene's layout; timm calls the classifier ``classif``). BN-Inception has no oracle:
    its key list is pinned to the one of the single inception.py it came from (commit 676ec6e)."""
    import hashlib

    timm = pytest.importorskip("timm")
    keys = {n: list(on_meta(zoo.create_model, n, num_classes=10).state_dict()) for n in NAMES if n != "googlenet"}
    tv = on_meta(torchvision.models.inception_v3, num_classes=10, aux_logits=True, init_weights=False)
    assert keys["inception_v3"] == list(tv.state_dict())
    for name in ("inception_v4", "inception_resnet_v2"):
        with torch.device("meta"):
            theirs = [k.replace("classif.", "last_linear.") for k in
                      timm.create_model(name, num_classes=10).state_dict()]
        assert keys[name] == theirs
    digest = hashlib.sha256(",".join(keys["inception_v2"]).encode()).hexdigest()[:16]
    assert (len(keys["inception_v2"]), digest) == (416, "6c4dc59dacbc1666")
