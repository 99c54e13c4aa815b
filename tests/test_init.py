"""Initialisation schemes: the weight statistics they give against the formulas, and zero-init of residuals."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from tests.conftest import ROOT
from zoo.errors import ZooError
from zoo.init import expected_std, init_weights


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(16, 64, 3), nn.BatchNorm2d(64), nn.Flatten(), nn.Linear(600, 400))


def _check_std(w: torch.Tensor, std: float) -> None:
    assert w.mean().abs().item() < 0.05 * std
    assert w.std().item() == pytest.approx(std, rel=0.04)


@pytest.mark.parametrize("scheme", ["xavier_uniform", "xavier_normal"])
def test_xavier_variance_is_2_over_fan_in_plus_fan_out(scheme: str) -> None:
    torch.manual_seed(0)
    net = init_weights(_net(), {"scheme": scheme, "nonlinearity": "linear"})
    conv, bn, lin = net[0], net[1], net[3]
    _check_std(conv.weight, expected_std(scheme, 16 * 9, 64 * 9))
    _check_std(lin.weight, math.sqrt(2 / (600 + 400)))
    if scheme == "xavier_uniform":  # U(-a, a) with a = sqrt(6 / (fan_in + fan_out))
        assert lin.weight.abs().max().item() <= math.sqrt(6 / 1000)
    assert (conv.bias == 0).all() and (lin.bias == 0).all()
    assert (bn.weight == 1).all() and (bn.bias == 0).all()


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
@pytest.mark.parametrize("scheme", ["kaiming_uniform", "kaiming_normal"])
def test_kaiming_variance_is_2_over_fan(scheme: str, mode: str) -> None:
    torch.manual_seed(0)
    net = init_weights(_net(), {"scheme": scheme, "mode": mode, "nonlinearity": "relu"})
    fan = {"fan_in": 16 * 9, "fan_out": 64 * 9}[mode]
    _check_std(net[0].weight, math.sqrt(2 / fan))
    _check_std(net[3].weight, math.sqrt(2 / (600 if mode == "fan_in" else 400)))


def test_orthogonal_rows_are_orthonormal_and_rnn_weights_are_covered() -> None:
    torch.manual_seed(0)
    lin = init_weights(nn.Linear(300, 200), "orthogonal")
    torch.testing.assert_close(lin.weight @ lin.weight.T, torch.eye(200), atol=1e-5, rtol=0)
    lstm = init_weights(nn.LSTM(8, 16), "orthogonal")
    w = lstm.weight_hh_l0  # 64 x 16: columns orthonormal
    torch.testing.assert_close(w.T @ w, torch.eye(16), atol=1e-5, rtol=0)
    assert (lstm.bias_hh_l0 == 0).all()


def test_trunc_normal_is_cut_at_two_sigma_with_the_truncated_std() -> None:
    torch.manual_seed(0)
    w = init_weights(nn.Linear(500, 400), {"scheme": "trunc_normal", "std": 0.02}).weight
    assert w.abs().max().item() <= 0.04
    # the standard deviation of N(0, s^2) truncated at +-2s: s * sqrt(1 - 2 * 2 phi(2) / (2 Phi(2) - 1))
    phi = math.exp(-2) / math.sqrt(2 * math.pi)
    big_phi = 0.5 * (1 + math.erf(2 / math.sqrt(2)))
    _check_std(w, 0.02 * math.sqrt(1 - 4 * phi / (2 * big_phi - 1)))


def test_default_keeps_the_models_own_weights() -> None:
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    init_weights(net, {"scheme": "default"})
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_zero_init_residual_matches_torchvision() -> None:
    ours = init_weights(torchvision.models.resnet50(), {"scheme": "default", "zero_init_residual": True})
    ref = torchvision.models.resnet50(zero_init_residual=True)
    zero = {k for k, v in ours.state_dict().items() if k.endswith("weight") and v.ndim == 1 and (v == 0).all()}
    ref_zero = {k for k, v in ref.state_dict().items() if k.endswith("weight") and v.ndim == 1 and (v == 0).all()}
    assert zero == ref_zero and len(zero) == 16  # bn3 of each of the 16 bottlenecks


def test_zero_init_residual_on_the_zoo_resnet_and_a_net_without_blocks() -> None:
    import zoo

    net = init_weights(zoo.create_model("resnet18", num_classes=10), {"scheme": "kaiming_normal",
                                                                       "zero_init_residual": True})
    blocks = [m for m in net.modules() if hasattr(m, "downsample")]
    assert len(blocks) == 8 and all((b.bn2.weight == 0).all() for b in blocks)
    assert (net.bn1.weight == 1).all()
    with pytest.raises(ZooError, match="no residual block"):
        init_weights(_net(), {"scheme": "default", "zero_init_residual": True})


def test_unknown_scheme_is_one_line() -> None:
    with pytest.raises(ZooError, match="unknown init scheme 'he'; valid: default, xavier_uniform"):
        init_weights(_net(), "he")


def test_every_init_config_composes_and_applies() -> None:
    for path in sorted((ROOT / "configs" / "init").glob("*.yaml")):
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            cfg = compose(config_name="train", overrides=[f"init={path.stem}"])
        assert cfg.init.scheme == path.stem
        init_weights(_net(), OmegaConf.to_container(cfg.init))


def test_one_zero_init_rule_for_the_model_option_and_the_init_config() -> None:
    """``ResNet(zero_init_residual=True)`` and ``init.zero_init_residual`` zero the same tensors: the last BN
    scale of a post-activation branch (torchvision), the last conv of a pre-activation one (timm's rule)."""
    import zoo

    for name, zeroed in (("resnet18", "bn2.weight"), ("preact_resnet18", "conv2.weight"),
                         ("preact_resnet50", "conv3.weight")):
        torch.manual_seed(0)
        built = zoo.create_model(name, num_classes=10, zero_init_residual=True)
        later = init_weights(zoo.create_model(name, num_classes=10), {"scheme": "default", "zero_init_residual": True})
        zero = [k for k, v in built.state_dict().items() if v.is_floating_point() and v.ndim and (v == 0).all()
                and k.endswith("weight")]
        zero_later = [k for k, v in later.state_dict().items() if v.is_floating_point() and v.ndim and (v == 0).all()
                      and k.endswith("weight")]
        assert zero == zero_later and len(zero) == (8 if name.endswith("18") else 16)
        assert all(k.endswith(zeroed) for k in zero)
        block = later.layer1[1]
        h = torch.relu(torch.randn(2, block.conv1.in_channels, 8, 8))
        torch.testing.assert_close(block(h), h if "preact" in name else torch.relu(h))  # each block the identity


@pytest.mark.parametrize("scheme", ["kaiming_normal", "xavier_uniform", "orthogonal"])
def test_a_scheme_reaches_weight_normed_layers(scheme: str) -> None:
    """``model.weight_norm=true`` moves each weight into ``parametrizations.weight.original0/1`` (g and v), which
    are not the layer's own parameters: the scheme still sets the weight the layer computes, exactly (the
    same draw as on the plain layer) and with the variance the formula gives."""
    from torch.nn.utils.parametrizations import weight_norm

    plain = _net()
    normed = _net()
    for m in normed:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            weight_norm(m, "weight", dim=0)
    torch.manual_seed(3)
    init_weights(plain, {"scheme": scheme})
    torch.manual_seed(3)
    init_weights(normed, {"scheme": scheme})
    for a, b in ((plain[0], normed[0]), (plain[3], normed[3])):
        torch.testing.assert_close(b.weight, a.weight)
        assert b.bias.abs().sum() == 0
    if scheme == "kaiming_normal":
        _check_std(normed[3].weight.detach(), expected_std(scheme, 600, 400, gain=math.sqrt(2)))  # relu
    with pytest.raises(ZooError, match="init=zeros with model.weight_norm=true"):
        init_weights(normed, {"scheme": "zeros"})


def test_zero_init_residual_reaches_a_weight_normed_last_conv() -> None:
    """A pre-activation branch ends in a convolution; weight-normed, its weight is g v / ||v||, and g = 0 makes
    the branch start at zero as the rule asks."""
    import zoo

    net = zoo.create_model("preact_resnet18", num_classes=10, weight_norm=True)
    init_weights(net, {"scheme": "default", "zero_init_residual": True})
    block = net.layer1[0]
    assert (block.conv2.weight == 0).all() and (block.conv1.weight != 0).any()
