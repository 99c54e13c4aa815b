"""Losses against torch.nn and hand-computed values; every loss config builds through Hydra."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from tests.conftest import ROOT
from zoo.errors import ZooError
from zoo.training.losses import CrossEntropyLoss, FocalLoss, SoftTargetCrossEntropy

torch.manual_seed(0)
LOGITS = torch.randn(16, 5)
TARGET = torch.randint(0, 5, (16,))
WEIGHT = [1.0, 2.0, 0.5, 1.0, 3.0]


def test_focal_loss_at_gamma_zero_is_cross_entropy() -> None:
    torch.testing.assert_close(FocalLoss(gamma=0)(LOGITS, TARGET), F.cross_entropy(LOGITS, TARGET))
    torch.testing.assert_close(FocalLoss(gamma=0, weight=WEIGHT)(LOGITS, TARGET),
                               F.cross_entropy(LOGITS, TARGET, weight=torch.tensor(WEIGHT)))
    soft = F.softmax(torch.randn(16, 5), 1)
    torch.testing.assert_close(FocalLoss(gamma=0)(LOGITS, soft), F.cross_entropy(LOGITS, soft))


def test_focal_loss_matches_the_paper_formula_by_hand() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    target = torch.tensor([0, 2])
    expected = 0.0
    for row, t in zip(logits.tolist(), target.tolist()):
        p = math.exp(row[t]) / sum(math.exp(z) for z in row)
        expected += -((1 - p) ** 2) * math.log(p)
    assert FocalLoss(gamma=2)(logits, target).item() == pytest.approx(expected / 2, rel=1e-6)
    # easy examples count for less: the focal loss of a confident correct prediction is far below its CE
    easy = torch.tensor([[6.0, 0.0, 0.0]])
    assert FocalLoss(gamma=2)(easy, torch.tensor([0])) < 1e-3 * F.cross_entropy(easy, torch.tensor([0]))


def test_focal_loss_takes_spatial_logits_like_cross_entropy() -> None:
    logits, target = torch.randn(2, 4, 3, 3), torch.randint(0, 4, (2, 3, 3))
    torch.testing.assert_close(FocalLoss(gamma=0)(logits, target), F.cross_entropy(logits, target))


def test_cross_entropy_takes_class_weights_as_a_list_and_label_smoothing() -> None:
    ours = CrossEntropyLoss(weight=WEIGHT, label_smoothing=0.1)(LOGITS, TARGET)
    ref = nn.CrossEntropyLoss(weight=torch.tensor(WEIGHT), label_smoothing=0.1)(LOGITS, TARGET)
    torch.testing.assert_close(ours, ref)
    # label smoothing by hand (no weights): (1 - e) * CE + e * mean over classes of -log p
    eps, logp = 0.1, F.log_softmax(LOGITS, 1)
    by_hand = ((1 - eps) * -logp.gather(1, TARGET[:, None]).squeeze(1) - eps * logp.mean(1)).mean()
    torch.testing.assert_close(CrossEntropyLoss(label_smoothing=eps)(LOGITS, TARGET), by_hand)


def test_class_weights_of_the_wrong_length_are_one_line() -> None:
    with pytest.raises(ZooError, match="3 entries but the model has 5 classes"):
        CrossEntropyLoss(weight=[1, 2, 3])(LOGITS, TARGET)
    with pytest.raises(ZooError, match="non-negative"):
        FocalLoss(weight=[1, -2, 3])


def test_soft_target_cross_entropy_for_mixup() -> None:
    lam = 0.3
    y2 = TARGET.roll(1)
    mixed = lam * F.one_hot(TARGET, 5).float() + (1 - lam) * F.one_hot(y2, 5).float()
    expected = lam * F.cross_entropy(LOGITS, TARGET) + (1 - lam) * F.cross_entropy(LOGITS, y2)
    torch.testing.assert_close(SoftTargetCrossEntropy()(LOGITS, mixed), expected)
    torch.testing.assert_close(SoftTargetCrossEntropy()(LOGITS, TARGET), F.cross_entropy(LOGITS, TARGET))


@pytest.mark.parametrize(
    ("name", "cls"),
    [("cross_entropy", CrossEntropyLoss), ("focal", FocalLoss), ("soft_target_cross_entropy", SoftTargetCrossEntropy),
     ("mse", nn.MSELoss), ("l1", nn.L1Loss), ("smooth_l1", nn.SmoothL1Loss)],
)
def test_every_loss_config_builds(name: str, cls: type) -> None:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"loss={name}"])
    loss = instantiate(OmegaConf.to_container(cfg.loss))
    assert type(loss) is cls
