"""Normalisation as a choice (zoo.models.norms), weight norm, maxout and Gaussian dropout (issue 18 items 1-2)."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import zoo
from zoo.errors import ZooError
from zoo.models.layers import GaussianDropout, Maxout
from zoo.models.norms import NORMS, SwitchNorm, make_norm

LENET_KEYS = [f"{layer}.{p}" for layer in ("conv1", "conv2", "fc1", "fc2", "fc3") for p in ("weight", "bias")]


def test_default_keys_are_unchanged() -> None:
    assert list(zoo.create_model("lenet5", num_classes=10, in_channels=1).state_dict()) == LENET_KEYS
    ours = zoo.create_model("vgg11_bn", num_classes=1000)
    assert list(ours.state_dict()) == list(torchvision.models.vgg11_bn().state_dict())  # torchvision's BN keys
    flag = zoo.create_model("mlp", num_classes=10, in_channels=1, width=32, batch_norm=True).state_dict()
    named = zoo.create_model("mlp", num_classes=10, in_channels=1, width=32, norm="batch").state_dict()
    assert list(flag) == list(named)
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert list(flag)[:6] == ["features.0.0.weight"] + [f"features.0.1.{k}" for k in bn]


def test_make_norm_is_a_torchvision_norm_layer_and_checks_its_arguments() -> None:
    norm_layer = functools.partial(make_norm, "group", groups=4)
    gn = norm_layer(8)
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 4 and gn.num_channels == 8
    assert isinstance(make_norm("layer", 8), nn.GroupNorm) and make_norm("layer", 8).num_groups == 1
    assert isinstance(make_norm("layer", 8, dim=1), nn.LayerNorm)
    assert isinstance(make_norm("batch", 8, dim=1), nn.BatchNorm1d)
    assert isinstance(make_norm("none", 8), nn.Identity)
    with pytest.raises(ZooError, match="norm_groups=3 must divide"):
        make_norm("group", 8, groups=3)
    with pytest.raises(ZooError, match="unknown norm 'weight'; valid: batch, group"):
        make_norm("weight", 8)
    with pytest.raises(ZooError, match="no maps"):
        zoo.create_model("mlp", num_classes=10, in_channels=1, norm="instance")
    with pytest.raises(ZooError, match="disagree"):
        zoo.create_model("mlp", num_classes=10, in_channels=1, norm="group", batch_norm=True)


def _pick(sn: SwitchNorm, k: int) -> SwitchNorm:
    """Softmax weights ~one-hot on statistic ``k`` (0 instance, 1 layer, 2 batch for maps)."""
    with torch.no_grad():
        sn.mean_weight.fill_(-30.0)[k] = 30.0
        sn.var_weight.fill_(-30.0)[k] = 30.0
    return sn


def test_switch_norm_reduces_to_instance_layer_and_batch_norm() -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 4, 5, 5) * 3 + 1
    torch.testing.assert_close(_pick(SwitchNorm(4), 0)(x), F.instance_norm(x), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(_pick(SwitchNorm(4), 1)(x), F.group_norm(x, 1), atol=1e-4, rtol=1e-4)
    sn, bn = _pick(SwitchNorm(4), 2), nn.BatchNorm2d(4)
    torch.testing.assert_close(sn(x), bn(x), atol=1e-4, rtol=1e-4)  # training: batch statistics
    torch.testing.assert_close(sn.running_mean, bn.running_mean)
    torch.testing.assert_close(sn.running_var, bn.running_var)
    y = torch.randn(3, 4, 5, 5)
    torch.testing.assert_close(sn.eval()(y), bn.eval()(y), atol=1e-4, rtol=1e-4)  # eval: running statistics
    # 1-d features: layer and batch statistics only
    f = torch.randn(8, 6) * 2 - 1
    torch.testing.assert_close(_pick(SwitchNorm(6, dim=1), 0)(f), F.layer_norm(f, (6,)), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(_pick(SwitchNorm(6, dim=1), 1)(f), nn.BatchNorm1d(6)(f), atol=1e-4, rtol=1e-4)


def _trains(net: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 5) -> tuple[float, float]:
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


@pytest.mark.parametrize("norm", NORMS)
def test_every_norm_trains_lenet5_and_the_mlp(norm: str) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    nets = [zoo.create_model("lenet5", num_classes=10, in_channels=1, norm=norm)]
    if norm != "instance":
        nets.append(zoo.create_model("mlp", num_classes=10, in_channels=1, width=32, norm=norm, norm_groups=4))
    for net in nets:
        first, last = _trains(net, x, y)
        assert last < first, f"{type(net).__name__} norm={norm}: loss {first:.3f} -> {last:.3f}"
    if norm == "switchable":  # the mixture weights are learnt
        assert nets[0].norm1.mean_weight.grad.abs().sum() > 0


def test_vgg_takes_another_norm_in_batch_norms_place() -> None:
    net = zoo.create_model("vgg11_bn", num_classes=10, in_channels=1, stem="cifar", norm="group", norm_groups=8)
    assert isinstance(net.features[1], nn.GroupNorm) and net.features[1].num_groups == 8
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_weight_norm_keeps_the_function_and_reparametrises_every_weight() -> None:
    torch.manual_seed(0)
    plain = zoo.create_model("lenet5", num_classes=10, in_channels=1)
    normed = zoo.create_model("lenet5", num_classes=10, in_channels=1, weight_norm=True)
    keys = list(normed.state_dict())
    assert "conv1.parametrizations.weight.original0" in keys and "conv1.weight" not in keys
    assert normed.state_dict()["fc1.parametrizations.weight.original0"].shape == (120, 1)  # g: one per unit
    # weight_norm starts from g = ||v||, so with v = the plain weights the network computes the same function
    with torch.no_grad():
        for name in ("conv1", "conv2", "fc1", "fc2", "fc3"):
            a, b = getattr(plain, name), getattr(normed, name)
            b.parametrizations.weight.original1.copy_(a.weight)
            dims = tuple(range(1, a.weight.ndim))
            b.parametrizations.weight.original0.copy_(torch.linalg.vector_norm(a.weight, dim=dims, keepdim=True))
            b.bias.copy_(a.bias)
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(normed(x), plain(x))


def test_maxout_is_the_max_of_the_affine_pieces() -> None:
    torch.manual_seed(0)
    net = zoo.create_model("mlp", num_classes=10, in_channels=1, depth=1, width=8, activation="maxout",
                           maxout_pieces=3)
    lin = net.features[0][0]
    assert lin.out_features == 24 and net.fc.in_features == 8
    x = torch.randn(5, 1, 28, 28)
    z = x.flatten(1) @ lin.weight.T + lin.bias  # N x 24: unit j's pieces are 3j, 3j+1, 3j+2
    expected = torch.stack([z[:, 3 * j: 3 * j + 3].max(1).values for j in range(8)], 1)
    torch.testing.assert_close(net.forward_features(x), expected)
    lenet = zoo.create_model("lenet5", num_classes=10, in_channels=1, activation="maxout")
    assert lenet.conv1.out_channels == 12 and lenet.conv2.in_channels == 6 and lenet.fc2.out_features == 168
    assert lenet(x).shape == (5, 10)
    with pytest.raises(ZooError, match="maxout_pieces must be at least 2"):
        Maxout(1)


def test_gaussian_dropout_noise_has_mean_one_and_dropouts_variance() -> None:
    torch.manual_seed(0)
    for p in (0.2, 0.5):
        noise = GaussianDropout(p).train()(torch.ones(400_000))
        assert abs(noise.mean().item() - 1) < 0.01
        assert abs(noise.var().item() - p / (1 - p)) < 0.01 * p / (1 - p) * 3
        bern = nn.Dropout(p).train()(torch.ones(400_000))  # the Bernoulli noise it replaces: same two moments
        assert abs(bern.var().item() - noise.var().item()) < 0.05 * p / (1 - p)
    x = torch.randn(4, 7)
    assert torch.equal(GaussianDropout(0.5).eval()(x), x)


def test_dropout_kind_swaps_every_dropout_and_keeps_the_state_dict() -> None:
    std = zoo.create_model("vgg11", num_classes=10, in_channels=1, stem="cifar")
    gauss = zoo.create_model("vgg11", num_classes=10, in_channels=1, stem="cifar", dropout_kind="gaussian")
    assert sum(isinstance(m, GaussianDropout) for m in gauss.modules()) == 2
    assert not any(type(m) is nn.Dropout for m in gauss.modules())
    assert list(std.state_dict()) == list(gauss.state_dict())
    mlp = zoo.create_model("mlp", num_classes=10, in_channels=1, dropout=0.3, dropout_kind="gaussian")
    assert [m.p for m in mlp.modules() if isinstance(m, GaussianDropout)] == [0.3, 0.3]
    for name, kwargs in (("mlp", {"dropout": 0.0}), ("wide_resnet28_10", {"drop_rate": 0.3})):
        with pytest.raises(ZooError, match=f"model.dropout_kind=gaussian: {name} has no nn.Dropout module"):
            zoo.create_model(name, num_classes=10, in_channels=1, dropout_kind="gaussian", **kwargs)
    with pytest.raises(ZooError, match="dropout_kind 'alpha'; valid: standard, gaussian"):
        zoo.create_model("mlp", num_classes=10, in_channels=1, dropout_kind="alpha")


@pytest.mark.parametrize("name", ["resnet18", "preact_resnet18", "resnet20", "resnext29_32x4d"])
def test_resnet_family_takes_model_norm_through_its_norm_layer(name: str) -> None:
    """model.norm= reaches the ResNet class's torchvision-style norm_layer: batch keeps every key, the others
    replace each BatchNorm2d and still train."""
    import zoo

    kw = {"stem": "cifar"} if name in ("resnet18", "preact_resnet18") else {}
    with torch.device("meta"):
        default = zoo.create_model(name, num_classes=10, **kw)
        batch = zoo.create_model(name, num_classes=10, norm="batch", **kw)
    assert list(default.state_dict()) == list(batch.state_dict())
    torch.manual_seed(0)
    net = zoo.create_model(name, num_classes=10, norm="group", norm_groups=4, **kw)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in net.modules())
    loss = torch.nn.functional.cross_entropy(net(torch.randn(2, 3, 32, 32)), torch.tensor([1, 2]))
    loss.backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_weight_norm_of_a_zero_initialised_residual_branch_stays_zero_not_nan() -> None:
    """``zero_init_residual`` zeroes a pre-activation block's last conv before ``weight_norm`` splits it into g
    and v; a zero weight has no direction (v / ||v|| is 0/0), so torch's split alone gives NaN weights."""
    import zoo

    torch.manual_seed(0)
    net = zoo.create_model("preact_resnet18", num_classes=10, weight_norm=True, zero_init_residual=True)
    last, first = net.layer1[0].conv2, net.layer1[0].conv1
    assert (last.weight == 0).all() and not torch.isnan(last.weight).any()
    assert (last.parametrizations.weight.original1.flatten(1).norm(dim=1) > 0).all()  # every unit has a direction
    assert (first.weight != 0).any()
    out = net(torch.randn(2, 3, 32, 32))
    assert torch.isfinite(out).all()
    out.sum().backward()  # and the branch can learn: g gets a gradient
    assert last.parametrizations.weight.original0.grad.abs().sum() > 0
