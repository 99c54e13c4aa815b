"""Using trained checkpoints: predict classes of a user's images, and evaluate ensembles of checkpoints.

Everything is rebuilt from what a checkpoint stores (``hyper_parameters["data"]["facts"]``: channels,
input size, mean/std, class names), so neither needs the command line that trained the model.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from zoo.errors import ZooError
from zoo.training.callbacks.resume_state import saved_val_metrics
from zoo.weights import load_checkpoint, load_pretrained

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
ENSEMBLES = ("mean", "vote", "weighted")


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def image_files(target: str | Path) -> list[Path]:
    """``target`` itself if it is an image, else the images in that folder (sorted, not recursive)."""
    p = Path(target).expanduser()
    if not p.exists():
        raise ZooError(f"predict={target}: no such file or folder")
    if p.is_file():
        return [p]
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ZooError(f"predict={target}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in that folder")
    return files


def load_image(path: Path, facts: dict[str, Any]) -> torch.Tensor:
    """A file as the checkpoint's data was fed: its channels, resized to its input size, normalised."""
    from PIL import Image, UnidentifiedImageError

    channels, height, width = facts["input_shape"][-3:]
    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
            x = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise ZooError(f"predict: {path} is not a readable image ({e.__class__.__name__})") from e
    x = x.view(height, width, -1).permute(2, 0, 1).float().div(255)  # C x H x W in [0, 1]
    mean = torch.tensor(facts["mean"]).view(-1, 1, 1)
    std = torch.tensor(facts["std"]).view(-1, 1, 1)
    return (x - mean) / std


def predict(ckpt_path: str, target: str, topk: int, run_dir: Path) -> list[dict[str, Any]]:
    """Print the top-k classes with probabilities for each image, and write ``run_dir/predictions.csv``."""
    ckpt = load_checkpoint(ckpt_path)
    facts = ckpt["hyper_parameters"]["data"]["facts"]
    if facts.get("task") == "language_model":
        raise ZooError(f"{ckpt_path} is a language model: sample text with prompt=TEXT sample_length=N instead")
    if facts.get("task", "classification") != "classification" or len(facts.get("input_shape", [])) != 3:
        raise ZooError(f"predict= needs an image classifier; {ckpt_path} was trained for {facts.get('task')!r}")
    files = image_files(target)
    net = load_pretrained(ckpt).to(_device())
    names = facts.get("class_names") or [str(i) for i in range(facts["num_classes"])]
    k = max(1, min(int(topk), facts["num_classes"]))
    rows = []
    with torch.no_grad():
        for start in range(0, len(files), 64):
            chunk = files[start : start + 64]
            x = torch.stack([load_image(f, facts) for f in chunk]).to(_device())
            probs = net(x).float().softmax(1).cpu()
            p, idx = probs.topk(k, dim=1)
            for f, pi, ii in zip(chunk, p.tolist(), idx.tolist()):
                row = {"image": str(f)}
                for r, (c, pr) in enumerate(zip(ii, pi), start=1):
                    row[f"class_{r}"], row[f"prob_{r}"] = names[c], round(pr, 6)
                rows.append(row)
                shown = ", ".join(f"{names[c]} {pr:.4f}" for c, pr in zip(ii, pi))
                print(f"{f}: {shown}", flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "predictions.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"predictions: {run_dir / 'predictions.csv'}", flush=True)
    return rows


def _test_data(hp: dict[str, Any], data_dir: str | None) -> Any:
    from hydra.utils import instantiate

    data_cfg = OmegaConf.create(hp["data"]["config"])
    if data_dir:
        data_cfg.data_dir = data_dir
    dm = instantiate(data_cfg)
    dm.setup()
    return dm


def combine(probs: torch.Tensor, mode: str, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Class predictions of an ensemble from member probabilities ``probs`` (members x N x classes).

    ``mean`` averages the softmax outputs; ``weighted`` averages them with ``weights``; ``vote`` takes
    the most common top-1 class, ties going to the class with the higher mean probability.
    """
    if mode == "mean":
        return probs.mean(0).argmax(1)
    if mode == "weighted":
        w = weights / weights.sum()
        return (probs * w.view(-1, 1, 1)).sum(0).argmax(1)
    if mode == "vote":
        votes = torch.nn.functional.one_hot(probs.argmax(2), probs.shape[2]).sum(0).float()  # N x classes
        return (votes + probs.mean(0) * 1e-3).argmax(1)  # mean probability < 1 vote: it only breaks ties
    raise ZooError(f"ensemble={mode!r}: valid: {', '.join(ENSEMBLES)}")


def evaluate_ensemble(paths: list[str], mode: str, run_dir: Path, data_dir: str | None = None) -> dict[str, Any]:
    """Each member's and the ensemble's test accuracy on the members' (shared) test split."""
    if mode not in ENSEMBLES:
        raise ZooError(f"ensemble={mode!r}: valid: {', '.join(ENSEMBLES)}")
    ckpts = [load_checkpoint(p) for p in paths]
    facts = [c["hyper_parameters"]["data"]["facts"] for c in ckpts]
    for p, f in zip(paths[1:], facts[1:]):
        if (f["name"], f["num_classes"], f["input_shape"]) != (facts[0]["name"], facts[0]["num_classes"],
                                                                facts[0]["input_shape"]):
            raise ZooError(f"ensemble members must share their data: {paths[0]} is {facts[0]['name']} "
                           f"({facts[0]['num_classes']} classes), {p} is {f['name']} ({f['num_classes']} classes)")
    if facts[0].get("task", "classification") != "classification":
        raise ZooError(f"ensembles combine classifiers; {paths[0]} was trained for {facts[0].get('task')!r}")
    weights = None
    if mode == "weighted":
        accs = []
        for p, c in zip(paths, ckpts):
            acc = saved_val_metrics(c).get("val/acc")
            if acc is None:
                raise ZooError(f"ensemble=weighted needs each member's val/acc; {p} does not store one")
            accs.append(acc)
        weights = torch.tensor(accs)
    dm = _test_data(ckpts[0]["hyper_parameters"], data_dir)
    device = _device()
    nets = [load_pretrained(c).to(device) for c in ckpts]
    member_probs: list[list[torch.Tensor]] = [[] for _ in nets]
    labels = []
    with torch.no_grad():
        for x, y in dm.test_dataloader():
            x = x.to(device)
            for i, net in enumerate(nets):
                member_probs[i].append(net(x).float().softmax(1).cpu())
            labels.append(y.cpu())
    y = torch.cat(labels)
    probs = torch.stack([torch.cat(p) for p in member_probs])  # members x N x classes
    members = []
    for p, pr, c in zip(paths, probs, ckpts):
        members.append({"checkpoint": str(Path(p).resolve()), "model": c["hyper_parameters"]["model"]["name"],
                        "test/acc": (pr.argmax(1) == y).float().mean().item()})
    ens_acc = (combine(probs, mode, weights) == y).float().mean().item()
    metrics: dict[str, Any] = {"ensemble": mode, "members": members, "test/acc": ens_acc}
    if weights is not None:
        metrics["weights"] = (weights / weights.sum()).tolist()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    for m in members:
        print(f"member {m['model']:<12} test/acc={m['test/acc']:.4f}  {m['checkpoint']}", flush=True)
    print(f"ensemble ({mode}, {len(nets)} members) test/acc={ens_acc:.4f}\nrun directory: {run_dir}", flush=True)
    return metrics
