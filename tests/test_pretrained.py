"""Pretrained weights by tag (zoo.pretrained): torchvision's metadata, torch.hub's cache, downloads, offline errors,
ImageNet evaluation and prediction with the weights' own preprocessing, fine-tuning from them.

No test touches the network: each fills its own ``TORCH_HOME`` with (random) state dicts saved under the
official file names, and the downloader is replaced by one that fails the test if it is called.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

import zoo
import zoo.pretrained as pretrained
from tests.conftest import run_cli
from zoo.errors import ZooError

ROOT = Path(__file__).resolve().parents[1]
R18_FILE = "resnet18-f37072fd.pth"  # torchvision's ResNet18_Weights.IMAGENET1K_V1


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch.hub cache of this test's own; any download attempt fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)

    def no_network(url: str, dst: Path, hash_prefix: str | None) -> None:
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(pretrained, "download", no_network)
    return cache


def _torchvision_resnet18(cache: Path, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    tv = torchvision.models.resnet18(**kwargs).eval()
    torch.save(tv.state_dict(), cache / R18_FILE)
    return tv


def test_pretrained_true_tag_and_path_load_the_cached_file_and_equal_torchvision(hub: Path) -> None:
    tv = _torchvision_resnet18(hub)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = tv(x)
        for how in (True, "IMAGENET1K_V1", str(hub / R18_FILE), R18_FILE):  # R18_FILE: found in the cache
            model = zoo.create_model("resnet18", pretrained=how).eval()
            assert torch.equal(model(x), expected), how
    other = zoo.create_model("resnet18", pretrained=True, num_classes=10)  # timm: a fresh classifier
    assert other.fc.out_features == 10 and torch.equal(other.conv1.weight, tv.conv1.weight)


def test_googlenet_weights_turn_on_transform_input_like_torchvision(hub: Path) -> None:
    torch.manual_seed(0)
    tv = torchvision.models.googlenet(init_weights=True, aux_logits=True, transform_input=True).eval()
    name = Path(torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.url).name
    torch.save(tv.state_dict(), hub / name)
    ours = zoo.create_model("googlenet", pretrained=True).eval()
    assert ours.transform_input
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), atol=1e-5, rtol=1e-5)


def test_model_info_weights_are_torchvisions_metadata(hub: Path) -> None:
    info = zoo.model_info("resnet50")["weights"]
    enum = torchvision.models.ResNet50_Weights
    assert [w["tag"] for w in info] == ["IMAGENET1K_V2", "IMAGENET1K_V1"]  # the default first
    assert [w["default"] for w in info] == [True, False]
    for w in info:
        tv = enum[w["tag"]]
        preset = tv.transforms()
        assert w["url"] == tv.url and w["file_name"] == Path(tv.url).name and w["hash"] in tv.url
        assert w["num_classes"] == len(tv.meta["categories"]) == 1000
        assert w["metrics"] == tv.meta["_metrics"]["ImageNet-1K"]
        assert w["preprocessing"] == {"resize": preset.resize_size[0], "crop": preset.crop_size[0],
                                      "interpolation": "bilinear", "mean": tuple(preset.mean),
                                      "std": tuple(preset.std)}
    assert info[0]["preprocessing"]["resize"] == 232 and info[1]["preprocessing"]["resize"] == 256
    timm_info = zoo.model_info("inception_v4")["weights"]
    assert [(w["tag"], w["source"], w["num_classes"]) for w in timm_info] == [("tf_in1k", "timm", 1000)]
    assert timm_info[0]["preprocessing"]["interpolation"] == "bicubic"
    assert timm_info[0]["preprocessing"]["crop"] == 299 and timm_info[0]["preprocessing"]["mean"] == (0.5,) * 3
    assert pretrained.requested("inception_v4", "inception_v4.tf_in1k").tag == "tf_in1k"  # timm's full name


def test_list_models_pretrained_lists_exactly_the_models_with_weights() -> None:
    with_weights = zoo.list_models(pretrained=True)
    twins = [n for n in zoo.list_models() if zoo.registry.entry(n).torchvision]
    assert set(twins) | {"inception_v4", "inception_resnet_v2"} == set(with_weights)
    assert "nin" not in with_weights
    assert zoo.list_models("vgg1?", pretrained=True) == ["vgg11", "vgg13", "vgg16", "vgg19"]


def test_no_weights_and_unknown_tags_say_what_exists(hub: Path) -> None:
    with pytest.raises(ZooError, match=r"'nin' has no published pretrained weights; models that do: alexnet, "):
        zoo.create_model("nin", pretrained=True)
    with pytest.raises(ZooError, match=r"no weights tagged 'IMAGENET1K_V2'; valid: IMAGENET1K_V1 "):
        zoo.create_model("resnet18", pretrained="IMAGENET1K_V2")
    with pytest.raises(ZooError, match="no such file"):
        zoo.create_model("resnet18", pretrained="/nonexistent/r18.pth")


def test_offline_without_the_file_names_the_url_and_the_path(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, dst: Path, hash_prefix: str | None) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(pretrained, "download", offline)
    with pytest.raises(ZooError) as e:
        zoo.create_model("resnet34", pretrained=True)
    msg = str(e.value)
    url = torchvision.models.ResNet34_Weights.IMAGENET1K_V1.url
    assert "\n" not in msg and url in msg and str(hub / Path(url).name) in msg


def test_download_goes_through_torch_hub_with_the_hash_check(hub: Path, monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    monkeypatch.undo()  # the real downloader (torch.hub.download_url_to_file), on a file:// URL
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    src = tmp_path / "served.pth"
    torch.save(torchvision.models.resnet18().state_dict(), src)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    w = pretrained.select("resnet18", True)

    bad = dataclasses.replace(w, url=src.as_uri(), file_name=f"resnet18-{'0' * 8}.pth", hash_prefix="0" * 8)
    with pytest.raises(ZooError, match="sha256 does not start with 00000000"):
        pretrained.fetch(bad)
    assert not (hub / bad.file_name).exists()  # nothing half-checked is left in the cache

    good = dataclasses.replace(w, url=src.as_uri(), file_name=f"resnet18-{sha[:8]}.pth", hash_prefix=sha[:8])
    path = pretrained.fetch(good)
    assert path == hub / good.file_name and path.read_bytes() == src.read_bytes()
    src.unlink()  # the cached file is now used without any download
    assert pretrained.fetch(good) == path


def test_torch_hub_load_pretrained_true(hub: Path) -> None:
    tv = _torchvision_resnet18(hub, seed=3)
    model = torch.hub.load(str(ROOT), "resnet18", source="local", pretrained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), tv(x))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["inception_v4", "inception_resnet_v2"])
def test_timm_weights_load_by_tag_through_the_cache_and_equal_timm(hub: Path, name: str) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    theirs = timm.create_model(name).eval()
    w = pretrained.select(name, True)
    assert w.tag == "tf_in1k" and w.url == f"https://huggingface.co/timm/{name}.tf_in1k/resolve/main/pytorch_model.bin"
    torch.save(theirs.state_dict(), hub / w.file_name)  # timm's own key names (IRv2's classifier is `classif`)
    ours = zoo.create_model(name, pretrained="tf_in1k").eval()
    x = torch.randn(1, 3, 107, 107)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-4)


# -- ImageNet evaluation and prediction ---------------------------------------------------------------------

# Sorted folder order (0, 1, 2) differs from the ImageNet indices, so a wrong label mapping cannot pass.
SYNSETS = {"n01443537": 1, "n01530575": 10, "n15075141": 999}  # goldfish, brambling, toilet tissue


def _val_folder(root: Path, per_class: int = 2) -> Path:
    from PIL import Image

    rng = torch.Generator().manual_seed(0)
    for i, synset in enumerate(SYNSETS):
        (root / "val" / synset).mkdir(parents=True)
        for j in range(per_class):
            h, w = 180 + 20 * i, 240 - 10 * j  # not square: resize-short-side then centre crop matters
            pixels = torch.randint(0, 256, (h, w, 3), generator=rng, dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(root / "val" / synset / f"{j}.{'png' if j else 'jpg'}")
    return root


def _biased_resnet18(cache: Path, classes: list[int]) -> torch.nn.Module:
    """A torchvision ResNet-18 whose top classes are ``classes`` in that order, whatever the image."""
    tv = _torchvision_resnet18(cache)
    with torch.no_grad():
        tv.fc.weight.mul_(1e-3)
        for rank, c in enumerate(classes):
            tv.fc.bias[c] = 100.0 - rank
    torch.save(tv.state_dict(), cache / R18_FILE)
    return tv


def test_imagenet_eval_transform_is_torchvisions_preset(tmp_path: Path) -> None:
    from PIL import Image

    _val_folder(tmp_path)
    w = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    for f in sorted((tmp_path / "val").rglob("*.*")):
        with Image.open(f) as im:
            im = im.convert("RGB")
            assert torch.equal(pretrained.eval_transform(pretrained.select("resnet50", "IMAGENET1K_V2"))(im),
                               w.transforms()(im))


def test_evaluate_imagenet_maps_synset_folders_to_imagenet_indices(hub: Path, tmp_path: Path) -> None:
    _biased_resnet18(hub, [10, 999, 3, 4, 5])  # top-1 brambling for every image, toilet tissue second
    metrics = pretrained.evaluate_imagenet("resnet18", True, _val_folder(tmp_path), batch_size=4, num_workers=0)
    assert metrics["images"] == 6
    assert metrics["test/acc"] == pytest.approx(1 / 3)  # the brambling folder
    assert metrics["test/acc_top5"] == pytest.approx(2 / 3)  # brambling and toilet tissue
    assert metrics["published"] == {"acc@1": 69.758, "acc@5": 89.078}  # torchvision's own numbers for the tag


def test_evaluate_imagenet_refuses_folders_that_are_not_synsets(hub: Path, tmp_path: Path) -> None:
    _torchvision_resnet18(hub)
    from PIL import Image

    for folder in ("cats", "n01443537"):
        (tmp_path / "data" / folder).mkdir(parents=True)
        Image.new("RGB", (40, 40)).save(tmp_path / "data" / folder / "a.png")
    with pytest.raises(ZooError, match="class folders must be ImageNet synsets .*; not one: cats$"):
        pretrained.evaluate_imagenet("resnet18", True, tmp_path / "data", num_workers=0)


def test_predict_from_weights_and_from_a_checkpoint_are_one_mechanism(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """predict= with published weights and predict= with a checkpoint differ only in where the network, the class
    names and the per-image transform come from: given the same three, the rows, the printed lines, the bytes of
    predictions.csv (formula-like names escaped, UTF-8) and the unreadable-image error are the same."""
    from PIL import Image

    from tests.test_checkpoints import legacy_hparams, write_checkpoint
    from zoo import evaluate
    from zoo.checkpoint import load_record

    hp = legacy_hparams()
    names = ["=zéro", "+un", "-deux", "@trois", "quatre", "cinq", "six", "sept", "huit", "neuf"]
    hp["data"]["facts"]["class_names"] = names
    path = write_checkpoint(tmp_path / "lenet.ckpt", hp=hp)
    ckpt, record = load_record(path)
    images = tmp_path / "images"
    images.mkdir()
    rng = torch.Generator().manual_seed(0)
    for i in range(66):  # past one batch of 64
        pixels = torch.randint(0, 256, (20 + i % 9, 30, 3), generator=rng, dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(images / (f"={i:02d} été.png" if i % 5 == 0 else f"{i:02d}.png"))
    w = dataclasses.replace(pretrained.select("resnet18", True), categories=tuple(names), num_classes=10)
    monkeypatch.setattr(pretrained, "select", lambda name, tag: w)
    monkeypatch.setattr(pretrained, "create_pretrained", lambda name, weights: evaluate.network(ckpt, record))
    monkeypatch.setattr(pretrained, "eval_transform", lambda weights: evaluate.checkpoint_transform(record.facts))

    monkeypatch.chdir(images)  # predict=. : the image cells are the bare file names
    capsys.readouterr()
    from_ckpt = evaluate.predict(str(path), ".", 3, tmp_path / "ckpt")
    printed_ckpt = capsys.readouterr().out
    from_weights = pretrained.predict_images("resnet18", True, ".", 3, tmp_path / "weights")
    printed_weights = capsys.readouterr().out
    assert len(from_ckpt) == 66 and from_weights == from_ckpt
    assert printed_weights.replace(str(tmp_path / "weights"), "RUN") == printed_ckpt.replace(str(tmp_path / "ckpt"),
                                                                                              "RUN")
    csv_bytes = (tmp_path / "weights" / "predictions.csv").read_bytes()
    assert csv_bytes == (tmp_path / "ckpt" / "predictions.csv").read_bytes()
    assert "\r\n'=00 été.png,".encode() in csv_bytes  # escaped and UTF-8 in both
    (images / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ZooError) as by_ckpt:
        evaluate.predict(str(path), str(images), 3, tmp_path / "ckpt")
    with pytest.raises(ZooError) as by_weights:
        pretrained.predict_images("resnet18", True, images, 3, tmp_path / "weights")
    assert str(by_weights.value) == str(by_ckpt.value) == f"predict: {images / 'broken.png'} is not a readable " \
                                                          f"image (UnidentifiedImageError)"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(TORCH_HOME=str(tmp_path / "torch"), ZOO_LOG_DIR=str(tmp_path / "stray"),
               https_proxy="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")  # any download fails fast
    return env


def _run(args: list[str], tmp_path: Path, in_process: bool = True) -> subprocess.CompletedProcess:
    """``python ARGS`` with ``TORCH_HOME`` in ``tmp_path`` and no way out to the network; in this process unless
    ``in_process=False`` (a download: urllib reads the proxy settings once a process)."""
    if in_process:
        return run_cli(*args, env=_env(tmp_path))
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_eval_py_tests_pretrained_weights_and_predicts_imagenet_names(hub: Path, tmp_path: Path) -> None:
    _biased_resnet18(hub, [10, 999, 3, 4, 5])
    data = _val_folder(tmp_path / "imagenet")
    run = tmp_path / "eval"
    proc = _run(["eval.py", "model=resnet18", "pretrained=IMAGENET1K_V1", "data=imagefolder",
                 f"data.data_dir={data}", "data.num_workers=0", f"hydra.run.dir={run}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/acc"] == pytest.approx(1 / 3) and metrics["weights"] == "IMAGENET1K_V1"
    proc = _run(["eval.py", "model=resnet18", "pretrained=true", f"predict={data / 'val' / 'n01443537'}",
                 "topk=2", f"hydra.run.dir={run}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "0.jpg: brambling" in proc.stdout and ", toilet tissue " in proc.stdout
    assert (run / "predictions.csv").read_text().splitlines()[0] == "image,class_1,prob_1,class_2,prob_2"


@pytest.mark.slow
def test_train_py_offline_without_weights_is_one_error_line_naming_url_and_path(tmp_path: Path) -> None:
    proc = _run(["train.py", "model=resnet18", "model.pretrained=true", "trainer.max_epochs=1"], tmp_path,
                in_process=False)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: could not download " + url)
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / R18_FILE) in lines[0]


@pytest.mark.slow
def test_finetune_from_a_tag_with_frozen_backbone(hub: Path, tmp_path: Path) -> None:
    tv = _torchvision_resnet18(hub)
    run = tmp_path / "run"
    proc = _run(["train.py", "data=digits", "data.image_size=32", "model=resnet18", "model.stem=imagenet",
                 "model.pretrained=IMAGENET1K_V1", "model.freeze=backbone", "optimizer.backbone_lr_scale=0.1",
                 "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "trainer.accelerator=cpu",
                 f"hydra.run.dir={run}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "note: pretrained classifier has 1000 classes, the data has 10: fc.bias, fc.weight re-initialised" \
        in proc.stdout
    tuned = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    ref = tv.state_dict()
    assert torch.equal(tuned["net.conv1.weight"], ref["conv1.weight"].sum(1, keepdim=True))  # RGB -> grey
    for k in ("layer1.0.conv1.weight", "layer4.1.bn2.running_var", "layer4.1.bn2.weight"):
        assert torch.equal(tuned[f"net.{k}"], ref[k]), k  # frozen: exactly the published weights
    assert tuned["net.fc.weight"].shape == (10, 512)


@pytest.mark.slow
def test_finetune_recipe_starts_from_the_imagenet_weights(hub: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from fake_data import write_cifar10
    from hydra import compose, initialize_config_dir

    import zoo.training.finetune as finetune
    from zoo.run import train

    tv = _torchvision_resnet18(hub)
    write_cifar10(tmp_path / "data")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=resnet18_imagenet_cifar10", "trainer=cpu",
                                          "++trainer.fast_dev_run=true", f"paths.data_dir={tmp_path / 'data'}",
                                          f"paths.output_dir={tmp_path / 'run'}", "data.batch_size=4",
                                          "data.eval_batch_size=4", "trainer.precision=32-true"])
    assert (cfg.model.pretrained, cfg.model.stem, cfg.optimizer.backbone_lr_scale) == ("IMAGENET1K_V1", "imagenet", 0.1)
    seen = {}
    load = finetune.load_pretrained_into

    def spy(net, *args, **kwargs):  # the task's network right after the weights went in
        note = load(net, *args, **kwargs)
        seen["conv1"], seen["fc"], seen["note"] = net.conv1.weight.detach().clone(), net.fc.weight.shape, note
        return note

    monkeypatch.setattr(finetune, "load_pretrained_into", spy)
    train(cfg)
    assert torch.equal(seen["conv1"], tv.conv1.weight) and seen["fc"] == (10, 512)
    assert seen["note"].startswith("note: pretrained classifier has 1000 classes, the data has 10")
