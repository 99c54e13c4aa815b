"""Backbones with timm's conventions: features_only / out_indices / feature_info, and num_classes=0.

timm is the oracle where it has the same network with the same key names: the same weights must give the
same feature maps, channels and reductions.
"""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.errors import ZooError
from zoo.registry import entry

# One network a CNN family (the smallest), and an input it accepts.
FAMILIES = {"alexnet": 96, "zfnet": 96, "nin": 96, "vgg11": 64, "googlenet": 64, "inception_v2": 64,
            "inception_v3": 107, "inception_v4": 107, "inception_resnet_v2": 107, "resnet18": 64,
            "preact_resnet18": 64, "resnext29_32x4d": 32, "wide_resnet50_2": 64, "densenet121": 64,
            "mobilenet_v1": 64, "lenet5": 32, "lenet5_classic": 32}


SLOW = {"inception_v3", "inception_v4", "inception_resnet_v2", "densenet121", "vgg11", "wide_resnet50_2"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in sorted(FAMILIES)])
def test_features_only_gives_the_maps_feature_info_describes(name: str) -> None:
    in_channels = entry(name).input_size[0]
    torch.manual_seed(0)
    full = zoo.create_model(name, in_channels=in_channels, num_classes=0).eval()  # the backbone, pooled
    with torch.device("meta"):  # no init of weights that are replaced: the copy below takes full's tensors
        backbone = zoo.create_model(name, in_channels=in_channels, features_only=True).eval()
    assert backbone.state_dict().keys() == full.state_dict().keys()  # timm: the network's own key names
    backbone.load_state_dict(full.state_dict(), assign=True)
    x = torch.randn(2, in_channels, FAMILIES[name], FAMILIES[name])
    with torch.no_grad():
        maps = backbone(x)
        info = backbone.feature_info
        assert [m.shape[1] for m in maps] == info.channels() and all(m.shape[0] == 2 for m in maps)
        assert info.reduction() == sorted(set(info.reduction()))  # strictly increasing strides
        assert [m.shape[-1] for m in maps] == sorted((m.shape[-1] for m in maps), reverse=True)
        if info.module_name()[-1] == "forward_features":  # the last map is the backbone's own output
            assert torch.equal(maps[-1], full.forward_features(x))


def _timm_names(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's FeatureListNet flattens a Sequential's children into its own names (features.conv0 -> features_conv0)."""
    return {k: ours[k if k in ours else k.replace("_", ".", 1)] for k in theirs}


@pytest.mark.parametrize("name", ["resnet50", "densenet121", pytest.param("vgg11", marks=pytest.mark.slow),
                                  pytest.param("inception_v3", marks=pytest.mark.slow),
                                  pytest.param("inception_resnet_v2", marks=pytest.mark.slow)])
def test_feature_maps_equal_timms_with_the_same_weights(name: str) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ours = zoo.create_model(name, features_only=True).eval()
    with torch.device("meta"):  # timm's twin takes our tensors: its own init would be thrown away
        theirs = timm.create_model(name, features_only=True).eval()
    theirs.load_state_dict(_timm_names(ours.state_dict(), theirs.state_dict()), assign=True)
    assert ours.feature_info.channels() == theirs.feature_info.channels()
    assert ours.feature_info.reduction() == theirs.feature_info.reduction()
    x = torch.randn(1, 3, 107, 107)
    with torch.no_grad():
        for a, b in zip(ours(x), theirs(x), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_out_indices_pick_maps_and_inception_v4_agrees_with_timm_on_them() -> None:
    timm = pytest.importorskip("timm")
    # timm's second Inception-v4 map is Mixed_3a (features.3); ours is the last 4x map, Mixed_4a (features.4)
    indices = (0, 2, 3, 4)
    ours = zoo.create_model("inception_v4", features_only=True, out_indices=indices).eval()
    theirs = timm.create_model("inception_v4", features_only=True, out_indices=indices).eval()
    theirs.load_state_dict(_timm_names(ours.state_dict(), theirs.state_dict()))
    assert ours.feature_info.module_name()[:3] == theirs.feature_info.module_name()[:3]
    x = torch.randn(1, 3, 107, 107)
    with torch.no_grad():
        for a, b in zip(ours(x), theirs(x), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_out_indices_select_and_negative_indices_count_from_the_end() -> None:
    torch.manual_seed(0)
    every = zoo.create_model("resnet18", features_only=True).eval()
    some = zoo.create_model("resnet18", features_only=True, out_indices=(1, -2)).eval()
    some.load_state_dict(every.state_dict())
    assert some.out_indices == (1, 3) and some.feature_info.reduction() == [4, 16]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        full, picked = every(x), some(x)  # `some` stops after layer3: layer4 never runs
    assert [torch.equal(p, full[i]) for p, i in zip(picked, (1, 3))] == [True, True]
    with pytest.raises(ZooError, match=r"out_indices=\(5,\): 'resnet18' has 5 feature maps, valid indices 0\.\.4"):
        zoo.create_model("resnet18", features_only=True, out_indices=(5,))


def test_features_only_refuses_models_without_feature_maps() -> None:
    with pytest.raises(ZooError, match="'mlp' has no feature maps"):
        zoo.create_model("mlp", features_only=True)
    with pytest.raises(ZooError, match="'lstm' is a sequence model"):
        zoo.create_model("lstm", features_only=True)


@pytest.mark.parametrize("name, head", [("resnet18", "fc"), ("densenet121", "classifier"), ("googlenet", "fc"),
                                        pytest.param("vgg11", "classifier.6", marks=pytest.mark.slow),
                                        ("mobilenet_v1", "classifier")])
def test_num_classes_0_gives_the_pooled_features_the_classifier_reads(name: str, head: str) -> None:
    torch.manual_seed(0)
    full = zoo.create_model(name).eval()
    with torch.device("meta"):  # a tensor it does not get from full stays on meta, and the forward fails
        pooled = zoo.create_model(name, num_classes=0).eval()
    _, unexpected = pooled.load_state_dict(full.state_dict(), strict=False, assign=True)
    assert {k.rsplit(".", 1)[0] for k in unexpected} >= {head}  # only classifiers are gone (GoogLeNet: aux too)
    assert all(k.rsplit(".", 2)[-2] in ("fc", "fc2", "classifier", "6") for k in unexpected)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = pooled(x)
        assert features.shape == (2, full.get_submodule(head).in_features)
        torch.testing.assert_close(full.get_submodule(head)(features), full(x))


def test_num_classes_0_equals_timm_resnet() -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ours = zoo.create_model("resnet50", num_classes=0).eval()
    with torch.device("meta"):
        theirs = timm.create_model("resnet50", num_classes=0).eval()
    theirs.load_state_dict(ours.state_dict(), assign=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))
    assert ours(x).shape == (2, 2048)


def test_a_feature_pyramid_on_features_only() -> None:
    """The README's detection-style use: torchvision's FPN on the strides 8, 16, 32 maps."""
    from torchvision.ops import FeaturePyramidNetwork

    backbone = zoo.create_model("resnet18", features_only=True, out_indices=(2, 3, 4)).eval()
    fpn = FeaturePyramidNetwork(backbone.feature_info.channels(), out_channels=64).eval()
    with torch.no_grad():
        pyramid = fpn(dict(zip(["p3", "p4", "p5"], backbone(torch.randn(1, 3, 128, 128)))))
    assert {k: tuple(v.shape) for k, v in pyramid.items()} == {"p3": (1, 64, 16, 16), "p4": (1, 64, 8, 8),
                                                               "p5": (1, 64, 4, 4)}
