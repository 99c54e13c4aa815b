"""Pretrained weights by tag, the way torchvision and timm users ask for them.

``create_model("resnet50", pretrained=True)`` (the default weights), ``pretrained="IMAGENET1K_V1"`` (a tag)
or ``pretrained=PATH``. Nothing about the weights is written here: for the torchvision twins everything
(URL, file hash, categories, preprocessing, published accuracy) is read from torchvision's own ``Weights``
enums, and for the two Inception networks torchvision lacks, from timm's ``pretrained_cfg`` (timm hosts the
public TF-slim ImageNet weights on the Hugging Face hub). A tag is always resolved against those.

Files live in torch.hub's cache, ``$TORCH_HOME/hub/checkpoints`` (``torch.hub.get_dir()``), under their
official names, so a file torchvision already downloaded is reused and vice versa. As with torch.hub, a
file in the cache is used as it is; a download shows a progress bar and is checked against the sha256
prefix in the file name (``resnet18-f37072fd.pth``) before it is moved into place. Without a network and
without the file, the error names the URL and the exact path to put the file at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zoo.errors import ZooError

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Weights:
    """One set of published weights of a zoo model, described by its publisher's metadata."""

    model: str  # zoo model name
    tag: str  # torchvision's enum member name (IMAGENET1K_V1) or timm's pretrained tag (tf_in1k)
    source: str  # "torchvision" or "timm"
    url: str
    file_name: str  # name in torch.hub's cache
    hash_prefix: str | None  # the sha256 prefix in torchvision's file names; timm's hub files carry none
    categories: tuple[str, ...] | None  # class names in output order (ImageNet-1k), None if not published
    num_classes: int | None
    resize: int  # evaluation: short side resized to this...
    crop: int  # ...then the centre crop of this size
    interpolation: str  # "bilinear" or "bicubic"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    metrics: dict[str, float] = field(default_factory=dict)  # published ImageNet-1k acc@1 / acc@5
    file_size_mb: float | None = None
    recipe: str | None = None
    default: bool = False
    classifier: str | None = None  # the publisher's classifier prefix when it differs from zoo's (timm: classif)

    def info(self) -> dict[str, Any]:
        """What ``model_info(name)["weights"]`` lists for this tag."""
        return {"tag": self.tag, "default": self.default, "source": self.source, "url": self.url,
                "file_name": self.file_name, "hash": self.hash_prefix, "num_classes": self.num_classes,
                "preprocessing": {"resize": self.resize, "crop": self.crop, "interpolation": self.interpolation,
                                  "mean": self.mean, "std": self.std},
                "metrics": dict(self.metrics), "file_size_mb": self.file_size_mb, "recipe": self.recipe}

    def adapt(self, weights: StateDict, head: set[str]) -> StateDict:
        """The publisher's key names -> zoo's, given zoo's classifier keys ``head``.

        Only the classifier's name can differ (timm's Inception-ResNet-v2 calls it ``classif``, zoo and
        Cadene's port ``last_linear``); it is read from timm's ``pretrained_cfg["classifier"]``.
        """
        absent = sorted({k.rsplit(".", 1)[0] for k in head if k not in weights})
        if not self.classifier or len(absent) != 1 or absent[0] == self.classifier:
            return weights
        old, new = self.classifier + ".", absent[0] + "."
        return {(new + k[len(old):]) if k.startswith(old) else k: v for k, v in weights.items()}


def _torchvision_weights(name: str, tv_name: str) -> list[Weights]:
    from torchvision.models import get_model_weights

    enum = get_model_weights(tv_name)
    out = []
    for w in enum:
        t = w.transforms()  # torchvision's ImageClassification preset: the evaluation transform of these weights
        metrics = next(iter(w.meta.get("_metrics", {}).values()), {})
        categories = w.meta.get("categories")
        out.append(Weights(
            model=name, tag=w.name, source="torchvision", url=w.url, file_name=Path(w.url).name,
            hash_prefix=_hash_in_name(Path(w.url).name),
            categories=tuple(categories) if categories else None,
            num_classes=len(categories) if categories else None,
            resize=int(t.resize_size[0]), crop=int(t.crop_size[0]), interpolation=t.interpolation.value,
            mean=tuple(t.mean), std=tuple(t.std), metrics={k: float(v) for k, v in metrics.items()},
            file_size_mb=w.meta.get("_file_size"), recipe=w.meta.get("recipe"), default=w is enum.DEFAULT))
    return out


def _timm_weights(name: str) -> list[Weights]:
    """timm's published tags of the architecture called ``name`` (zoo uses timm's names and keys for these)."""
    try:
        import timm
        from timm.models import get_pretrained_cfg
    except ImportError:
        return []
    out = []
    default = get_pretrained_cfg(name)
    for full in timm.list_pretrained(name + ".*"):
        cfg = get_pretrained_cfg(full)
        if cfg is None or not cfg.hf_hub_id or cfg.custom_load:
            continue
        size = int(cfg.input_size[-1])
        # timm's evaluation transform: resize the short side to size / crop_pct, centre-crop size
        resize = int(size / cfg.crop_pct)
        categories = _imagenet_categories() if cfg.num_classes == 1000 else None
        out.append(Weights(
            model=name, tag=cfg.tag, source="timm", url=f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/"
            "pytorch_model.bin", file_name=f"timm-{full}.pth", hash_prefix=None, categories=categories,
            num_classes=cfg.num_classes, resize=resize, crop=size, interpolation=cfg.interpolation,
            mean=tuple(cfg.mean), std=tuple(cfg.std), recipe=f"https://huggingface.co/{cfg.hf_hub_id}",
            default=default is not None and cfg.tag == default.tag, classifier=cfg.classifier))
    return out


def _imagenet_categories() -> tuple[str, ...] | None:
    """ImageNet-1k class names in output order: torchvision's (the same for every ImageNet-1k weight)."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _hash_in_name(file_name: str) -> str | None:
    m = torch.hub.HASH_REGEX.search(file_name)
    return m.group(1) if m else None


def available(name: str) -> dict[str, Weights]:
    """The published weights of a zoo model by tag, default first; empty if it has none."""
    from zoo.registry import entry

    e = entry(name)
    found = _torchvision_weights(name, e.torchvision) if e.torchvision else _timm_weights(name)
    found.sort(key=lambda w: not w.default)
    return {w.tag: w for w in found}


def models_with_weights() -> list[str]:
    from zoo.registry import list_models

    return [n for n in list_models() if available(n)]


def cache_dir() -> Path:
    """torch.hub's checkpoint cache: ``$TORCH_HOME/hub/checkpoints`` (``~/.cache/torch/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def select(name: str, pretrained: bool | str) -> Weights:
    """The weights ``pretrained=True`` or ``pretrained="TAG"`` asks for; a ZooError naming what exists."""
    weights = available(name)
    if not weights:
        raise ZooError(f"{name!r} has no published pretrained weights; models that do: "
                       f"{', '.join(models_with_weights())} (or pass pretrained=PATH to a file)")
    if pretrained is True or str(pretrained).lower() in ("true", "default"):
        return next(iter(weights.values()))
    tag = str(pretrained)
    if tag not in weights:
        raise ZooError(f"{name!r} has no weights tagged {tag!r}; valid: {', '.join(weights)} "
                       f"(or true for the default, or a path to a file)")
    return weights[tag]


def _looks_like_path(value: str) -> bool:
    p = Path(value).expanduser()
    return p.exists() or "/" in value or "\\" in value or p.suffix != "" or value.startswith("~")


def resolve(name: str, pretrained: bool | str | Path) -> tuple[Path, Weights | None]:
    """``true``/``TAG``/``PATH`` -> the local file to read (downloading a tag's file if needed) and its Weights.

    A bare file name that is not beside the caller is looked up in torch.hub's cache too, so
    ``model.pretrained=resnet18-f37072fd.pth`` finds the file torchvision downloaded.
    """
    w = requested(name, pretrained)
    if w is not None:
        return fetch(w), w
    p = Path(str(pretrained)).expanduser()
    if not p.exists() and p.name == str(pretrained) and (cache_dir() / p.name).is_file():
        p = cache_dir() / p.name
    if not p.exists():
        raise ZooError(f"pretrained={pretrained}: no such file (also looked in torch.hub's cache {cache_dir()})")
    return p, None


def requested(name: str, pretrained: bool | str | Path) -> Weights | None:
    """The published weights ``pretrained`` names (true, a tag, or timm's ``arch.tag``), or None when it is a path;
    nothing is downloaded."""
    if isinstance(pretrained, str) and pretrained.startswith(name + ".") and not Path(pretrained).exists():
        pretrained = pretrained[len(name) + 1:]  # timm's full name, inception_v4.tf_in1k
    elif isinstance(pretrained, Path) or (isinstance(pretrained, str) and _looks_like_path(pretrained)):
        return None
    return select(name, pretrained)


def download(url: str, dst: Path, hash_prefix: str | None) -> None:
    """torch.hub's downloader: a progress bar, a temporary file, the sha256 prefix checked before the move."""
    torch.hub.download_url_to_file(url, str(dst), hash_prefix, progress=True)


def fetch(w: Weights) -> Path:
    """The cached file of ``w``, downloaded first if it is not there (as ``load_state_dict_from_url`` does)."""
    dst = cache_dir() / w.file_name
    if dst.is_file():  # like torch.hub: a cached file is trusted as it is, no network needed
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        download(w.url, dst, w.hash_prefix)
    except RuntimeError as e:  # torch.hub: "invalid hash value (expected ..., got ...)"
        if "hash" not in str(e):
            raise
        raise ZooError(f"downloaded {w.url} but its sha256 does not start with {w.hash_prefix} "
                       f"(corrupt or tampered download); nothing was written to {dst}") from e
    except OSError as e:  # URLError, timeouts, DNS: no network
        reason = getattr(e, "reason", None) or e.__class__.__name__
        raise ZooError(f"could not download {w.url} ({reason}); without a network, download it elsewhere and "
                       f"put it at {dst}") from e
    return dst


# -- ImageNet evaluation and prediction with the weights' own preprocessing -----------------------------------


def eval_transform(w: Weights) -> Any:
    """PIL image -> normalised float tensor exactly as the weights were evaluated: resize the short side,
    centre crop, mean/std. It is torchvision's own preset (what ``weights.transforms()`` builds), given the
    values of ``w``, so timm's weights get the same code with their bicubic 0.875-crop numbers."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import ImageClassification

    return ImageClassification(crop_size=w.crop, resize_size=w.resize, mean=w.mean, std=w.std,
                               interpolation=InterpolationMode(w.interpolation))


def imagenet_synsets() -> list[str]:
    """The 1000 ImageNet-1k synsets (``n01440764``, ...) in output order, from timm's ImageNetInfo."""
    try:
        from timm.data import ImageNetInfo
    except ImportError as e:
        raise ZooError("a val folder with only some of the 1000 synset folders needs timm's synset list: "
                       "pip install timm (or give all 1000 class folders)") from e
    return list(ImageNetInfo().label_names())


def imagenet_folder(data_dir: str | Path, w: Weights) -> Any:
    """An ImageNet-style val folder (``DIR/val/<synset>/*.JPEG`` or ``DIR/<synset>/*``) as a dataset whose
    targets are ImageNet-1k indices, preprocessed as ``w`` says."""
    import torchvision.datasets

    root = Path(data_dir).expanduser()
    root = root / "val" if (root / "val").is_dir() else root
    if not root.is_dir():
        raise ZooError(f"data.data_dir={data_dir}: no such folder; point it at an ImageNet-style val folder "
                       f"(one sub-folder per synset, e.g. n01440764/)")
    try:
        ds = torchvision.datasets.ImageFolder(str(root), transform=eval_transform(w))
    except (FileNotFoundError, OSError) as e:
        raise ZooError(f"no images found in {root} ({e}); expected one sub-folder per synset") from e
    if w.num_classes != 1000:
        raise ZooError(f"{w.model} {w.tag} has {w.num_classes} classes; the ImageNet evaluation needs ImageNet-1k "
                       f"weights")
    if len(ds.classes) == 1000:  # sorted synsets are ImageNet-1k's class order
        return ds
    synsets = {s: i for i, s in enumerate(imagenet_synsets())}
    unknown = [c for c in ds.classes if c not in synsets]
    if unknown:
        raise ZooError(f"{root}: class folders must be ImageNet synsets (n01440764, ...); not one: "
                       f"{', '.join(unknown[:5])}")
    ds.target_transform = _ToImageNetIndex([synsets[c] for c in ds.classes])
    return ds


class _ToImageNetIndex:
    """Folder index -> ImageNet-1k index (picklable for DataLoader workers)."""

    def __init__(self, table: list[int]) -> None:
        self.table = table

    def __call__(self, target: int) -> int:
        return self.table[target]


def evaluate_imagenet(name: str, pretrained: bool | str, data_dir: str | Path, batch_size: int = 100,
                      num_workers: int = 4, device: str | None = None) -> dict[str, Any]:
    """Top-1/top-5 accuracy of published weights on an ImageNet-style val folder, with their own preprocessing.

    On the full 50,000-image ImageNet validation set this reproduces torchvision's ``acc@1``/``acc@5``.
    """
    from torch.utils.data import DataLoader

    w = select(name, pretrained)
    ds = imagenet_folder(data_dir, w)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    net = create_pretrained(name, w).to(dev)
    correct1 = correct5 = seen = 0
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers, pin_memory=dev.type == "cuda")
    with torch.inference_mode():
        for x, y in loader:
            top5 = net(x.to(dev)).topk(5, dim=1).indices.cpu()  # N x 5
            correct1 += (top5[:, 0] == y).sum().item()
            correct5 += (top5 == y[:, None]).any(1).sum().item()
            seen += len(y)
    metrics = {"model": name, "weights": w.tag, "images": seen, "test/acc": correct1 / seen,
               "test/acc_top5": correct5 / seen}
    if w.metrics:
        metrics["published"] = dict(w.metrics)
    print(f"{name} {w.tag} on {seen} images of {data_dir}: acc@1 {100 * correct1 / seen:.3f}  acc@5 "
          f"{100 * correct5 / seen:.3f}" + (f"  (published: {w.metrics})" if w.metrics else ""), flush=True)
    return metrics


def create_pretrained(name: str, w: Weights) -> torch.nn.Module:
    """``create_model(name, pretrained=w.tag)`` in eval mode, with the weights' number of classes."""
    from zoo.registry import create_model

    return create_model(name, num_classes=w.num_classes or 1000, pretrained=w.tag).eval()


def predict_images(name: str, pretrained: bool | str, target: str | Path, topk: int, run_dir: Path
                   ) -> list[dict[str, Any]]:
    """``predict=`` for published weights: zoo.evaluate's prediction (the same rows, lines and predictions.csv as
    a checkpoint's) with the weights' ImageNet class names (``categories``) and their own eval transform."""
    from zoo.evaluate import image_files, predict_files

    w = select(name, pretrained)
    names = list(w.categories or [str(i) for i in range(w.num_classes or 1000)])
    files = image_files(target)  # a mistyped path is told before any download
    transform = eval_transform(w)
    return predict_files(create_pretrained(name, w), files, names, lambda im: transform(im.convert("RGB")), topk,
                         run_dir)


def evaluate_config(cfg: Any, run_dir: Path) -> dict[str, Any]:
    """``python eval.py model=NAME pretrained=TAG data=imagefolder data.data_dir=DIR`` (or ``predict=IMAGES``)."""
    import json

    model = cfg.get("model") or {}
    if not model.get("name"):
        raise ZooError("eval.py pretrained=... needs model=NAME, e.g. model=resnet50 pretrained=IMAGENET1K_V2")
    if cfg.get("predict"):
        return {"predictions": predict_images(model.name, cfg.pretrained, str(cfg.predict), cfg.get("topk", 5),
                                              run_dir)}
    data = cfg.get("data") or {}
    data_dir = cfg.get("data_dir") or data.get("data_dir")
    if not data_dir:
        raise ZooError("eval.py pretrained=... needs data=imagefolder data.data_dir=DIR (an ImageNet-style val "
                       "folder) or predict=IMAGE_OR_FOLDER")
    metrics = evaluate_imagenet(model.name, cfg.pretrained, data_dir, int(data.get("eval_batch_size", 100)),
                                int(data.get("num_workers", 4)))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"run directory: {run_dir}", flush=True)
    return metrics


def weights_table() -> str:
    """The README's table: each model with published weights, its tags with ImageNet-1k acc@1, preprocessing."""
    from zoo.registry import list_models

    rows = ["| model | source | tags, ImageNet-1k acc@1 | resize / crop |", "|---|---|---|---|"]
    for name in list_models(pretrained=True):
        ws = list(available(name).values())
        tags = ", ".join(f"{w.tag} {w.metrics['acc@1']:.3f}" if w.metrics.get("acc@1") == w.metrics.get("acc@1")
                         and "acc@1" in w.metrics else f"{w.tag} (no acc@1 in its metadata)" for w in ws)
        rows.append(f"| `{name}` | {ws[0].source} | {tags} | {ws[0].resize} / {ws[0].crop}, {ws[0].interpolation} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(weights_table())
