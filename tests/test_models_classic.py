"""LeNet-5, AlexNet, ZFNet, NiN, VGG and MobileNet v1 against their oracles.

torchvision's own models for alexnet and vgg*: its seeded weights load into ours with strict=True and the
eval outputs agree within 1e-5. Parameter counts computed layer by layer by hand for the others, and the
papers' published totals within 2%.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import zoo
from zoo.errors import ZooError
from zoo.models.lenet import C3_TABLE, scaled_tanh
from zoo.registry import entry

VGGS = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def conv(c_in: int, c_out: int, k: int, groups: int = 1) -> int:
    """Weights and biases of a k x k convolution."""
    return c_out * (c_in // groups) * k * k + c_out


def fc(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def meta_model(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):  # shapes only: counting parameters needs no memory and no init
        return zoo.create_model(name, **kwargs)


# --- LeNet-5 --------------------------------------------------------------------------------------------------


def test_lenet5_classic_parameters_by_hand() -> None:
    m = zoo.create_model("lenet5_classic", num_classes=10, in_channels=1)
    c1 = conv(1, 6, 5)  # 156
    s2 = 6 * 2  # a coefficient and a bias per map
    c3 = sum(len(inputs) * 25 + 1 for inputs in C3_TABLE)  # Table I: 6 x 76 + 6 x 101 + 3 x 101 + 151
    s4 = 16 * 2
    c5 = conv(16, 120, 5)  # 48,120
    f6 = fc(120, 84)  # 10,164
    assert (c1, c3, c5, f6) == (156, 1516, 48120, 10164)
    assert c1 + s2 + c3 + s4 + c5 + f6 == 60_000  # the paper: "60,000 trainable parameters"
    assert n_params(m) == 60_000 + fc(84, 10)  # plus the linear output standing in for the fixed RBF codes
    assert n_params(m.c3) == 1516 and n_params(m.s2) == 12 and n_params(m.s4) == 32


def test_lenet5_classic_c3_sees_only_its_table_row() -> None:
    """Changing an S2 map that Table I does not connect to C3 map j leaves map j unchanged."""
    torch.manual_seed(0)
    c3 = zoo.create_model("lenet5_classic", num_classes=10, in_channels=1).c3
    x = torch.randn(1, 6, 14, 14)
    base = c3(x)
    for i in range(6):
        x2 = x.clone()
        x2[:, i] += 1.0
        changed = (c3(x2) - base).abs().amax(dim=(0, 2, 3)) > 0
        assert changed.tolist() == [i in row for row in C3_TABLE]


def test_lenet5_classic_subsampling_and_squashing() -> None:
    m = zoo.create_model("lenet5_classic", num_classes=10, in_channels=1)
    x = torch.randn(2, 6, 4, 4)
    with torch.no_grad():
        m.s2.weight.copy_(torch.arange(1.0, 7.0))
        m.s2.bias.fill_(0.5)
    window_sum = x[:, :, 0:2, 0:2].sum(dim=(2, 3))
    expected = window_sum * torch.arange(1.0, 7.0) + 0.5
    torch.testing.assert_close(m.s2(x)[:, :, 0, 0], expected)
    # f(a) = 1.7159 tanh(2a/3): f(1) = 1 and f(-1) = -1 (the paper's choice of A and S)
    torch.testing.assert_close(scaled_tanh(torch.tensor([1.0, -1.0])), torch.tensor([1.0, -1.0]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["lenet5", "lenet5_classic"])
def test_lenet_takes_mnist_and_paper_sizes_only(name: str) -> None:
    m = zoo.create_model(name, num_classes=10, in_channels=1).eval()
    for side in (28, 32):
        assert m(torch.randn(2, 1, side, side)).shape == (2, 10)
    with pytest.raises(ZooError, match="32x32"):
        m(torch.randn(2, 1, 30, 30))


def test_lenet5_default_run_model_unchanged() -> None:
    """``python train.py`` builds lenet5 with these kwargs; its layout (61,706 parameters) must not move."""
    m = zoo.create_model("lenet5", num_classes=10, in_channels=1, dropout=0.0)
    assert n_params(m) == conv(1, 6, 5) + conv(6, 16, 5) + fc(400, 120) + fc(120, 84) + fc(84, 10) == 61_706
    assert list(m.state_dict()) == [f"{layer}.{p}" for layer in ("conv1", "conv2", "fc1", "fc2", "fc3")
                                    for p in ("weight", "bias")]


# --- torchvision parity ---------------------------------------------------------------------------------------


def _parity(name: str, size: int) -> None:
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)().eval()
    with torch.device("meta"):
        ours = zoo.create_model(name)
    ours.load_state_dict(theirs.state_dict(), strict=True, assign=True)  # keys and shapes equal, or it raises
    ours.eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=0)


def test_alexnet_matches_torchvision() -> None:
    _parity("alexnet", 224)


@pytest.mark.slow
@pytest.mark.parametrize("name", VGGS)
def test_vgg_matches_torchvision(name: str) -> None:
    """Full size for vgg16 and vgg16_bn; 64x64 for the rest (the 7x7 adaptive pool and every key still run)."""
    _parity(name, 224 if name.startswith("vgg16") else 64)


@pytest.mark.parametrize("name", ["alexnet", *VGGS])
def test_parameters_equal_torchvision(name: str) -> None:
    with torch.device("meta"):
        theirs = getattr(torchvision.models, name)()
    assert n_params(meta_model(name)) == n_params(theirs)
    assert entry(name).torchvision == name


def test_published_torchvision_counts() -> None:
    assert n_params(meta_model("vgg16")) == 138_357_544
    assert n_params(meta_model("alexnet")) == 61_100_840


# --- the papers' networks -------------------------------------------------------------------------------------


def test_alexnet_2012_parameters() -> None:
    """Two-GPU connectivity: conv2, conv4 and conv5 see half the maps (groups=2); 227x227 gives 6x6 maps."""
    by_hand = (conv(3, 96, 11) + conv(96, 256, 5, groups=2) + conv(256, 384, 3) + conv(384, 384, 3, groups=2)
               + conv(384, 256, 3, groups=2) + fc(256 * 6 * 6, 4096) + fc(4096, 4096) + fc(4096, 1000))
    n = n_params(meta_model("alexnet_2012"))
    assert n == by_hand == 60_965_224
    assert abs(n - 60e6) / 60e6 < 0.02  # the paper: "60 million parameters"


def test_alexnet_2012_layers() -> None:
    m = meta_model("alexnet_2012")
    assert m(torch.empty(1, 3, 227, 227, device="meta")).shape == (1, 1000)
    assert m.forward_features(torch.empty(1, 3, 227, 227, device="meta")).shape == (1, 256, 6, 6)
    pools = [x for x in m.features if isinstance(x, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(3, 2)] * 3  # overlapping: window 3, stride 2
    assert sum(isinstance(x, nn.LocalResponseNorm) for x in m.features) == 2


def test_alexnet_2012_lrn_is_the_papers_formula() -> None:
    """b_i = a_i / (k + alpha * sum_{j=i-n/2}^{i+n/2} a_j^2)^beta with k=2, n=5, alpha=1e-4, beta=0.75."""
    lrn = next(x for x in zoo.create_model("alexnet_2012", num_classes=10).features
               if isinstance(x, nn.LocalResponseNorm))
    a = torch.randn(1, 8, 2, 2) * 30
    sq = a**2
    expected = torch.stack([a[:, i] / (2 + 1e-4 * sq[:, max(0, i - 2): i + 3].sum(1)) ** 0.75 for i in range(8)], 1)
    torch.testing.assert_close(lrn(a), expected)


def test_alexnet_2012_paper_init() -> None:
    m = zoo.create_model("alexnet_2012", num_classes=10)
    convs = [x for x in m.features if isinstance(x, nn.Conv2d)]
    fcs = [x for x in m.classifier if isinstance(x, nn.Linear)]
    assert [float(c.bias.detach().mean()) for c in convs] == [0.0, 1.0, 0.0, 1.0, 1.0]
    assert [float(f.bias.detach().mean()) for f in fcs] == [1.0, 1.0, 0.0]
    assert abs(float(fcs[0].weight.detach().std()) - 0.01) < 1e-3


def test_zfnet_parameters_and_sizes() -> None:
    by_hand = (conv(3, 96, 7) + conv(96, 256, 5) + conv(256, 384, 3) + conv(384, 384, 3) + conv(384, 256, 3)
               + fc(256 * 6 * 6, 4096) + fc(4096, 4096) + fc(4096, 1000))
    m = meta_model("zfnet")
    assert n_params(m) == by_hand == 62_357_608
    sizes, x = [], torch.empty(1, 3, 224, 224, device="meta")
    for layer in m.features:
        x = layer(x)
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            sizes.append(x.shape[-1])
    assert sizes == [110, 55, 26, 13, 13, 13, 13, 6]  # the paper's Fig. 3
    assert m.features[0].kernel_size == (7, 7) and m.features[0].stride == (2, 2)


def test_nin_parameters() -> None:
    """ImageNet NiN (Caffe model zoo) and the paper's CIFAR-10 network, counted layer by layer; no FC layer."""
    imagenet = (conv(3, 96, 11) + 2 * conv(96, 96, 1) + conv(96, 256, 5) + 2 * conv(256, 256, 1)
                + conv(256, 384, 3) + 2 * conv(384, 384, 1) + conv(384, 1024, 3) + conv(1024, 1024, 1)
                + conv(1024, 1000, 1))
    cifar = (conv(3, 192, 5) + conv(192, 160, 1) + conv(160, 96, 1) + conv(96, 192, 5) + 2 * conv(192, 192, 1)
             + conv(192, 192, 3) + conv(192, 192, 1) + conv(192, 10, 1))
    m = meta_model("nin")
    assert n_params(m) == imagenet == 7_595_176
    assert abs(imagenet - 7.6e6) / 7.6e6 < 0.02  # published as 7.6M
    small = meta_model("nin", num_classes=10, stem="cifar")
    assert n_params(small) == cifar == 966_986
    assert abs(cifar - 0.97e6) / 0.97e6 < 0.02  # the paper's CIFAR-10 model: 0.97M
    assert not any(isinstance(x, nn.Linear) for x in m.modules())
    assert m(torch.empty(2, 3, 224, 224, device="meta")).shape == (2, 1000)


def test_mobilenet_v1_parameters_and_macs() -> None:
    """Paper Table 8/6: 4.2M parameters and 569M mult-adds; alpha = 0.5: 1.3M and 149M."""
    from zoo.stats import summary

    full = summary(meta_model("mobilenet_v1"), (3, 224, 224))
    assert full.params == 4_231_976
    assert abs(full.params - 4.2e6) / 4.2e6 < 0.02
    assert abs(full.macs - 569e6) / 569e6 < 0.01
    half = summary(meta_model("mobilenet_v1", width_mult=0.5), (3, 224, 224))
    assert abs(half.params - 1.3e6) / 1.3e6 < 0.04
    assert abs(half.macs - 149e6) / 149e6 < 0.02
    m = meta_model("mobilenet_v1")
    dw = [x for x in m.modules() if isinstance(x, nn.Conv2d) and x.groups > 1]
    assert len(dw) == 13 and all(x.groups == x.in_channels == x.out_channels for x in dw)


@pytest.mark.parametrize("name", ["alexnet", "alexnet_2012", "zfnet", "vgg11_bn", "mobilenet_v1"])
def test_cifar_stem_keeps_key_names(name: str) -> None:
    big = meta_model(name, num_classes=10)
    small = meta_model(name, num_classes=10, stem="cifar")
    assert list(big.state_dict()) == list(small.state_dict())


def test_nin_cifar_keys_are_the_imagenet_names() -> None:
    """The paper's CIFAR network has three mlpconv blocks to ImageNet's four: its keys are a subset, same names."""
    big = list(meta_model("nin", num_classes=10).state_dict())
    small = list(meta_model("nin", num_classes=10, stem="cifar").state_dict())
    assert set(small) < set(big) and "features.cccp6.weight" in small and "features.conv4.weight" not in small


def test_vgg_cifar_variant() -> None:
    m = zoo.create_model("vgg11", num_classes=10, in_channels=1, stem="cifar").eval()
    for side in (28, 32):
        x = torch.randn(2, 1, side, side)
        assert m.forward_features(x).shape == (2, 512, 1, 1)
        assert m(x).shape == (2, 10)
    assert m.classifier[0].in_features == 512


def test_vgg_init_is_torchvisions() -> None:
    """Convs: Kaiming normal (fan_out), zero bias; classifier N(0, 0.01) (ImageNet head). The cifar variant's
    512-wide classifier keeps PyTorch's default uniform(+-1/sqrt(fan_in))."""
    torch.manual_seed(0)
    with torch.no_grad():
        m = zoo.create_model("vgg11", num_classes=10)
        conv1 = m.features[0]
        fan_out = conv1.out_channels * 9
        assert abs(float(conv1.weight.std()) - (2 / fan_out) ** 0.5) < 0.1 * (2 / fan_out) ** 0.5
        assert float(conv1.bias.abs().max()) == 0.0
        assert abs(float(m.classifier[0].weight.std()) - 0.01) < 1e-3
        small = zoo.create_model("vgg11", num_classes=10, stem="cifar")
        bound = 1 / 512**0.5
        w = small.classifier[0].weight
        assert float(w.abs().max()) <= bound and float(w.std()) > 0.5 * bound / 3**0.5


@pytest.mark.parametrize("name", ["zfnet", "nin", "mobilenet_v1", "alexnet", "vgg11"])
def test_unknown_stem_is_a_user_error(name: str) -> None:
    with pytest.raises(ZooError, match="stem"):
        meta_model(name, stem="tiny")


@pytest.mark.parametrize("name", ["alexnet", "alexnet_2012", "zfnet", "nin", "vgg16", "mobilenet_v1"])
@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
def test_minimum_size_is_exact_per_stem(name: str, stem: str) -> None:
    """The declared minimum runs; one pixel less is a ZooError naming it (shapes only, on the meta device)."""
    m = meta_model(name, num_classes=10, stem=stem).eval()
    low = entry(name).min_size_for(stem)  # the one declaration, in register_model
    with torch.device("meta"):
        assert m(torch.empty(1, 3, low, low)).shape == (1, 10)
        if low > 1:
            with pytest.raises(ZooError, match=f"at least {low}x{low}"):
                m(torch.empty(1, 3, low - 1, low))
