"""zoo.stats against hand-computed numbers: receptive fields of LeNet-5 and VGG16, MACs of small layers and of
ResNet-50 at 224 (4.1 G), activation memory, and the model table."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

import zoo
from zoo.stats import main, model_table, summary


def meta(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return zoo.create_model(name, **kwargs)


def fields(s) -> list[tuple[int, int, int]]:
    return [(st.size[0], st.receptive_field, st.jump) for st in s.stages]


def test_lenet5_receptive_fields_by_hand() -> None:
    """C1 5x5: 5. Pool 2x2/2: 5 + 1 = 6, jump 2. C3 5x5: 6 + 4 * 2 = 14. Pool: 14 + 1 * 2 = 16, jump 4."""
    s = summary(zoo.create_model("lenet5", num_classes=10, in_channels=1), (1, 32, 32))
    assert fields(s) == [(28, 5, 1), (14, 6, 2), (10, 14, 2), (5, 16, 4)]
    assert [layer.op for layer in s.layers] == ["conv2d", "max_pool2d", "conv2d", "max_pool2d"]
    assert s.layers[0].name == "conv1"
    # the classic network has the same fields (its subsampling is also 2x2/2, C5 then sees all 32x32)
    c = summary(zoo.create_model("lenet5_classic", num_classes=10, in_channels=1), (1, 32, 32))
    assert fields(c)[:4] == [(28, 5, 1), (14, 6, 2), (10, 14, 2), (5, 16, 4)]
    assert fields(c)[4] == (1, 16 + 4 * 4, 4)


def test_vgg16_receptive_fields_by_hand() -> None:
    """Each 3x3 conv adds 2 x jump, each 2x2/2 pool adds 1 x jump and doubles it; the stage ends are
    5, 14, 40, 92, 196 (conv1_2 ... conv5_3) and 212 after pool5."""
    rf, jump, expected = 1, 1, []
    for block in ([64] * 2, [128] * 2, [256] * 3, [512] * 3, [512] * 3):
        rf += 2 * jump * len(block)
        expected.append(rf)
        rf, jump = rf + jump, jump * 2
    expected.append(rf)
    assert expected == [5, 14, 40, 92, 196, 212]
    s = summary(meta("vgg16"), (3, 224, 224))
    assert fields(s) == [(224, 5, 1), (112, 14, 2), (56, 40, 4), (28, 92, 8), (14, 196, 16), (7, 212, 32)]
    assert s.params == 138_357_544
    assert abs(s.macs - 15.47e9) / 15.47e9 < 0.01  # torchvision's documented 15.47 GFLOPS (multiply-adds)


def test_resnet50_macs() -> None:
    with torch.device("meta"):
        m = torchvision.models.resnet50()
    s = summary(m, (3, 224, 224))
    assert 4.0e9 < s.macs < 4.2e9  # "3.8 x 10^9 FLOPs" in the paper; torchvision documents 4.09 G
    assert s.params == 25_557_032


def test_macs_of_single_layers_by_hand() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert summary(conv, (3, 16, 16)).macs == 8 * 3 * 9 * 16 * 16
    assert summary(nn.Conv2d(8, 8, 3, padding=1, groups=8), (8, 10, 10)).macs == 8 * 9 * 10 * 10
    assert summary(nn.Sequential(nn.Flatten(), nn.Linear(12, 5)), (3, 2, 2)).macs == 12 * 5


def test_activation_memory_counts_distinct_outputs() -> None:
    """float32 outputs at batch 1; an in-place ReLU writes into its input and costs nothing more."""
    inplace = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True))
    fresh = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
    assert summary(inplace, (1, 8, 8)).activation_bytes == 4 * 8 * 8 * 4
    assert summary(fresh, (1, 8, 8)).activation_bytes == 2 * 4 * 8 * 8 * 4


class Branches(nn.Module):
    """Two branches concatenated (3x3 and dilated 3x3 = 5x5 field), then a 2x2/2 pool and a strided conv."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, padding=1)
        self.b = nn.Conv2d(1, 2, 3, padding=2, dilation=2)
        self.c = nn.Conv2d(4, 4, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.a(x), self.b(x)], 1)  # the concatenation sees the larger field: 5
        y = torch.nn.functional.avg_pool2d(y, 2)  # 5 + 1 = 6, jump 2
        return self.c(y)  # 6 + 2 * 2 = 10, jump 4


def test_receptive_field_through_branches_dilation_and_functional_ops() -> None:
    s = summary(Branches(), (1, 16, 16))
    assert fields(s) == [(16, 5, 1), (8, 6, 2), (4, 10, 4)]
    assert [layer.name for layer in s.layers] == ["a", "b", "avg_pool2d", "c"]


def test_summary_restores_training_mode_and_runs_real_tensors() -> None:
    m = zoo.create_model("mobilenet_v1", num_classes=10, width_mult=0.25, stem="cifar")
    m.train()
    s = summary(m, (3, 32, 32))
    assert m.training
    assert s.params == s.trainable_params == sum(p.numel() for p in m.parameters())
    assert [st.size for st in s.stages[-2:]] == [(2, 2), (1, 1)]  # last block, then the global average pool
    assert s.stages[-1].receptive_field > 32


def test_model_table(capsys) -> None:
    table = model_table("vgg16*")
    rows = table.splitlines()
    assert len(rows) == 4 and rows[0].startswith("| model |")
    assert "| `vgg16` | vgg | 2014 | 138,357,544 | 15.47 G | 3x224x224 | 212 px | `vgg16` |" in rows
    main(["lenet5*"])
    out = capsys.readouterr().out
    assert "`lenet5_classic`" in out and "| 1x32x32 |" in out and "`vgg16`" not in out
