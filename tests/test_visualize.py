"""zoo.visualize on networks built so the right picture is known, and eval.py visualize=... end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from tests.conftest import run_cli
from tests.test_checkpoints import MNIST_FACTS, write_checkpoint
from zoo.errors import ZooError
from zoo.visualize import (
    KINDS,
    check_layer,
    deconv_projection,
    default_layer,
    grad_cam,
    guided_backprop,
    stage_layers,
    top_activations,
    visualize,
)


class TwoRegions(nn.Module):
    """Class 0's evidence is input channel 0, class 1's is channel 1 (a 3x3 stride-2 mean filter each, then
    global average pooling and an identity classifier)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, stride=2, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 1 / 9
            self.conv.weight[1, 1] = 1 / 9
            self.fc.weight.copy_(torch.tensor([[1.0, -0.2], [-0.2, 1.0]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(x)).mean((2, 3)))


def _two_squares() -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.rand(1, 2, 16, 16) * 0.02  # a faint background everywhere
    x[0, 0, 1:7, 1:7] += 1.0  # class 0's evidence: top left
    x[0, 1, 9:15, 9:15] += 1.0  # class 1's evidence: bottom right
    return x


def test_grad_cam_peaks_where_each_class_has_its_evidence() -> None:
    net, x = TwoRegions().eval(), _two_squares()
    squares = {0: (slice(1, 7), slice(1, 7)), 1: (slice(9, 15), slice(9, 15))}
    for target, (rows, cols) in squares.items():
        cam = grad_cam(net, x, "relu", torch.tensor([target]))[0]  # 16 x 16
        r, c = divmod(int(cam.argmax()), 16)
        assert rows.start <= r < rows.stop and cols.start <= c < cols.stop, (target, r, c)
        near = cam[max(0, rows.start - 2) : rows.stop + 2, max(0, cols.start - 2) : cols.stop + 2]
        assert near.sum() / cam.sum() > 0.9, target  # the square and the 2 pixels the map's upsampling blurs
        other_rows, other_cols = squares[1 - target]
        assert cam[other_rows, other_cols].sum() / cam.sum() < 0.02, target  # nothing on the other class's square


def test_grad_cam_equals_the_formula_by_hand() -> None:
    """With a linear head after global average pooling, dy_c/dA_k = w_ck / (u v) at every position."""
    net, x = TwoRegions().eval(), _two_squares()
    act = net.relu(net.conv(x))  # 1 x 2 x 8 x 8
    alpha = net.fc.weight[1].view(1, 2, 1, 1) / 64
    cam = F.interpolate(F.relu((alpha * act).sum(1, keepdim=True)), size=(16, 16), mode="bilinear")[0, 0]
    torch.testing.assert_close(grad_cam(net, x, "relu", torch.tensor([1]))[0], (cam / cam.max()).detach())


class TwoConvs(nn.Module):
    """conv3x3 - ReLU (a module, in place) - conv3x3 - F.relu - the unit at (6, 6) of each channel as a class."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.act(self.conv1(x))))[:, :, 6, 6]  # N x 2


def test_guided_backprop_is_zero_outside_the_receptive_field() -> None:
    torch.manual_seed(0)
    net, x = TwoConvs().eval(), torch.randn(3, 1, 16, 16)
    sal = guided_backprop(net, x, torch.tensor([0, 1, 0]))
    # output (6, 6) of two unpadded 3x3 convolutions sees input rows and columns 6..10
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[6:11, 6:11] = True
    assert sal[:, 0][:, ~inside].abs().max() == 0
    assert (sal[:, 0][:, inside].abs().sum((1,)) > 0).all()


def test_guided_backprop_matches_the_rule_by_hand() -> None:
    """One hidden ReLU layer: the gradient passes where the unit was on *and* the gradient is positive."""
    torch.manual_seed(1)
    conv, head = nn.Conv2d(1, 3, 3), nn.Linear(3 * 6 * 6, 2)
    net = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), head).eval()
    x = torch.randn(1, 1, 8, 8)
    pre = conv(x)
    g = head.weight[1].view(1, 3, 6, 6)
    guided = F.conv_transpose2d(g.clamp(min=0) * (pre > 0), conv.weight)
    plain = F.conv_transpose2d(g * (pre > 0), conv.weight)
    got = guided_backprop(net, x, torch.tensor([1]))
    torch.testing.assert_close(got, guided.detach())
    assert not torch.allclose(got, plain)  # the rule was applied, not the plain gradient


class PlusDetector(nn.Module):
    """Channel 0 of conv1 detects a plus sign; max-pooling follows (the deconvnet needs its switches)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(2, 3)
        with torch.no_grad():
            plus = torch.tensor([[-0.5, 1.0, -0.5], [1.0, 1.0, 1.0], [-0.5, 1.0, -0.5]])
            self.conv1.weight[0, 0] = plus
            self.conv1.weight[1, 0] = -plus  # a second channel that dislikes the pattern

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.relu(self.conv1(x))).amax((2, 3)))


def test_deconv_finds_the_images_with_the_pattern_and_projects_onto_it() -> None:
    torch.manual_seed(0)
    net = PlusDetector().eval()
    images = torch.rand(30, 1, 16, 16) * 0.2
    with_plus = torch.randperm(30)[:9]
    centres = {}
    for i in with_plus.tolist():
        r, c = torch.randint(2, 14, (2,)).tolist()
        images[i, 0, r - 1 : r + 2, c] += 1.0
        images[i, 0, r, c - 1 : c + 2] += 1.0
        centres[i] = (r, c)
    peaks, top = top_activations(net, images, "pool", batch=7)
    assert peaks.shape == (30, 2) and top.shape == (2, 9)
    assert set(top[0].tolist()) == set(with_plus.tolist())
    assert peaks[top[0], 0].tolist() == sorted(peaks[top[0], 0].tolist(), reverse=True)
    for i, (r, c) in centres.items():
        proj, value = deconv_projection(net, images[i : i + 1], "pool", 0)
        # unpooling sends the activation to the switch (the plus's centre); the transposed filter draws the plus
        expected = torch.zeros(16, 16)
        expected[r - 1 : r + 2, c - 1 : c + 2] = value * net.conv1.weight[0, 0]
        torch.testing.assert_close(proj[0], expected.detach(), atol=1e-5, rtol=1e-4)


def test_layer_names_and_the_error_that_lists_them() -> None:
    import zoo

    lenet = zoo.create_model("lenet5", num_classes=10, in_channels=1).eval()
    x = torch.zeros(1, 1, 28, 28)
    assert check_layer(lenet, x, "conv2") == (1, 16, 10, 10)
    assert default_layer(lenet, x) == "conv2"
    with pytest.raises(ZooError, match=r"visualize.layer=act: it runs 4 times .*; valid: conv1, conv2$"):
        check_layer(lenet, x, "act")
    with pytest.raises(ZooError, match=r"fc1: its output is \(1, 120\), not N x C x H x W"):
        check_layer(lenet, x, "fc1")
    with pytest.raises(ZooError, match="no module of the network has that name; valid: conv1, conv2"):
        check_layer(lenet, x, "layer3")
    resnet = zoo.create_model("resnet18", num_classes=10, stem="imagenet").eval()
    x = torch.zeros(1, 3, 64, 64)
    assert stage_layers(resnet, x) == ["relu", "layer1", "layer2", "layer3", "layer4"]
    assert default_layer(resnet, x) == "layer4"
    assert check_layer(resnet, x, "layer3.1.conv2") == (1, 256, 4, 4)
    vgg = zoo.create_model("vgg11_bn", num_classes=10).eval()  # at 32 pixels its adaptive pool blows 1x1 up to 7x7
    x = torch.zeros(1, 3, 32, 32)
    assert check_layer(vgg, x, "avgpool") == (1, 512, 7, 7)
    assert default_layer(vgg, x) == "features.27" and "avgpool" not in stage_layers(vgg, x)


def _events(run_dir: Path) -> set[str]:
    tags: set[str] = set()
    for f in (run_dir / "tensorboard").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(f), size_guidance={"images": 1})
        acc.Reload()
        tags |= set(acc.Tags()["images"])
    return tags


def test_every_kind_writes_a_png_and_a_tensorboard_image(tmp_path: Path) -> None:
    from PIL import Image

    from zoo.datamodules.vision import load_mnist_5k

    ckpt = write_checkpoint(tmp_path / "lenet.ckpt")
    x, _ = load_mnist_5k()
    images = tmp_path / "digits"
    images.mkdir()
    for i in range(3):
        Image.fromarray(x[i, 0].numpy()).save(images / f"{i}.png")
    out = tmp_path / "out"
    for kind in KINDS:
        png = visualize(ckpt, kind, image=images, run_dir=out, channels=[0, 5] if kind == "deconv" else None)
        assert png == out / f"visualize_{kind}.png"
        with Image.open(png) as im:
            assert im.format == "PNG" and min(im.size) >= 100
    assert _events(out) == {f"visualize/{k}" for k in KINDS}
    assert MNIST_FACTS["input_shape"] == [1, 28, 28]
    with pytest.raises(ZooError, match=r"visualize.channels=\[16\]: the layer has channels 0 to 15"):
        visualize(ckpt, "deconv", image=images, run_dir=out, channels=16)
    with pytest.raises(ZooError, match="filters are drawn for a Conv2d; valid: conv1, conv2"):
        visualize(ckpt, "filters", layer="fc1", run_dir=out)


@pytest.mark.slow
def test_eval_py_visualize_and_a_wrong_layer_in_one_line(tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "lenet.ckpt")
    ok = run_cli("eval.py", f"ckpt_path={ckpt}", "visualize=gradcam", f"hydra.run.dir={tmp_path / 'run'}")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "run" / "visualize_gradcam.png").is_file()  # the checkpoint's own test images
    assert _events(tmp_path / "run") == {"visualize/gradcam"}
    bad = run_cli("eval.py", f"ckpt_path={ckpt}", "visualize=deconv", "visualize.layer=act",
                  f"hydra.run.dir={tmp_path / 'bad'}")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        "error: visualize.layer=act: it runs 4 times in one forward pass; valid: conv1, conv2")
    assert "Traceback" not in bad.stderr


def test_a_misspelt_kind_names_the_valid_ones() -> None:
    from zoo.cli import check_overrides

    with pytest.raises(ZooError, match=r"unknown visualize 'gradcm' \(did you mean gradcam\?\); "
                                       r"valid: deconv, features, filters, gradcam, saliency$"):
        check_overrides(["visualize=gradcm"])


def test_a_checkpoint_cannot_choose_what_is_instantiated(tmp_path: Path) -> None:
    """Without visualize.image the test split is rebuilt from the checkpoint's data config: only zoo's own
    datamodules may be named there, at the top level and nowhere else."""
    ckpt_path = write_checkpoint(tmp_path / "lenet.ckpt")
    ckpt = torch.load(ckpt_path, weights_only=True)
    good = ckpt["hyper_parameters"]["data"]["config"]
    for bad in ({**good, "_target_": "os.system", "command": "touch pwned"},
                {**good, "seed": {"_target_": "os.system", "command": "touch pwned"}}):
        ckpt["hyper_parameters"]["data"]["config"] = bad
        torch.save(ckpt, tmp_path / "bad.ckpt")
        with pytest.raises(ZooError, match=r"refusing .*bad.ckpt: it names code to run \(os.system\)"):
            visualize(tmp_path / "bad.ckpt", "gradcam", run_dir=tmp_path / "out")
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
