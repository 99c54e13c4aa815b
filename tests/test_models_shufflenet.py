"""ShuffleNet v1 and v2: v2 against torchvision (strict weights, outputs, parameter counts), v1 against the
paper's Table 2 complexities, the channel shuffle against torch's own, the cifar stem, and the stats tracer."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import zoo
from zoo.errors import ZooError
from zoo.models import shufflenet as S
from zoo.stats import summary

V2 = {"shufflenet_v2_x0_5": 1_366_792, "shufflenet_v2_x1_0": 2_278_604, "shufflenet_v2_x1_5": 3_503_624,
      "shufflenet_v2_x2_0": 7_393_996}  # torchvision's published parameter counts


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize("name", V2)
def test_v2_loads_torchvision_weights_and_gives_its_outputs(name: str) -> None:
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(weights=None).eval()
    for m in theirs.modules():  # non-trivial BN statistics, so a swapped mean/var would show
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    ours = zoo.load_pretrained(theirs.state_dict(), name=name)  # strict, in eval mode
    assert sum(p.numel() for p in ours.parameters()) == V2[name]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=0)


def test_channel_shuffle_is_torchs_and_interleaves_the_groups() -> None:
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert S.channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]  # [a0 a1 a2 | b0 b1 b2] -> a0 b0 a1 ...
    y = torch.randn(2, 24, 5, 5)
    for g in (2, 3, 4, 8):
        assert torch.equal(S.channel_shuffle(y, g), nn.ChannelShuffle(g)(y))


# Paper Table 2: ShuffleNet 1x complexity in MFLOPs (multiply-adds) at 224x224 for g = 1, 2, 3, 4, 8.
TABLE_2 = {1: 143, 2: 140, 3: 137, 4: 133, 8: 137}


@pytest.mark.parametrize("groups", TABLE_2)
def test_v1_complexity_is_the_papers(groups: int) -> None:
    with torch.device("meta"):
        m = zoo.create_model("shufflenet_v1", groups=groups)
    macs = summary(m, (3, 224, 224)).macs / 1e6
    assert abs(macs - TABLE_2[groups]) / TABLE_2[groups] < 0.015, macs  # within 1.5% (the paper rounds)
    stage4 = m.stage4[0].gconv2
    assert stage4.groups == groups and m.fc.in_features == S.V1_WIDTHS[groups][-1]
    assert m.stage2[0].gconv1.groups == 1 and m.stage2[1].gconv1.groups == groups  # stage 2's first 1x1 ungrouped


def test_v1_shuffle_matters_and_cifar_stem(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the shuffle, an output channel of a grouped unit depends on every input group; without it (the
    shuffle replaced by the identity), on its own group only."""

    def groups_reached() -> list[bool]:
        torch.manual_seed(0)
        unit = S.ShuffleUnit(48, 48, groups=3, stride=1).eval()
        x = torch.randn(1, 48, 6, 6, requires_grad=True)
        unit(x)[0, 0].sum().backward()
        return (x.grad.abs().sum((0, 2, 3)) > 0).view(3, 16).any(1).tolist()  # input groups reaching channel 0

    assert groups_reached() == [True, True, True]
    monkeypatch.setattr(S, "channel_shuffle", lambda x, g: x)
    assert groups_reached() == [True, False, False]
    monkeypatch.undo()
    with torch.device("meta"):
        m = zoo.create_model("shufflenet_v1", groups=8, num_classes=10, stem="cifar")
        assert m.forward_features(torch.empty(2, 3, 32, 32)).shape == (2, 1536, 4, 4)  # total stride 8
        v2 = zoo.create_model("shufflenet_v2_x1_0", num_classes=10, stem="cifar")
        assert v2.forward_features(torch.empty(2, 3, 32, 32)).shape == (2, 1024, 4, 4)
    with pytest.raises(ZooError, match="groups"):
        zoo.create_model("shufflenet_v1", groups=5)


def test_receptive_field_follows_the_written_out_shuffle(monkeypatch: pytest.MonkeyPatch) -> None:
    """zoo.stats traces the field through the view-transpose-view of the shuffle: the same stages as with
    torch's single channel_shuffle op."""
    with torch.device("meta"):
        m = zoo.create_model("shufflenet_v2_x0_5")
    written = summary(m, (3, 224, 224)).stages
    monkeypatch.setattr(S, "channel_shuffle", nn.functional.channel_shuffle)
    assert summary(m, (3, 224, 224)).stages == written
    assert [s.size for s in written][-3:] == [(28, 28), (14, 14), (7, 7)]
