"""Evaluation from checkpoints alone, the work behind ``eval.py``: test, predict, ensembles, text samples.

Everything is rebuilt from a checkpoint's record (zoo.checkpoint: the model by registered name, the data
set by config name, the facts: channels, input size, mean/std, class names), so nothing needs the command
line that trained the model, and nothing read from the file chooses code. The test split is rebuilt in
one place (``Record.datamodule``); the Trainer is built as training builds it (zoo.run.build_trainer:
weights-only checkpoint I/O, one-line errors for settings Lightning refuses).
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from zoo.checkpoint import Record, load_record
from zoo.datamodules.whiten import preprocess
from zoo.errors import ZooError
from zoo.training.callbacks.resume_state import saved_val_metrics
from zoo.weights import state_dict_of

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
ENSEMBLES = ("mean", "vote", "weighted", "stacking")


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def image_files(target: str | Path, option: str = "predict") -> list[Path]:
    """``target`` itself if it is an image, else the images in that folder (sorted, not recursive); ``option``
    names the setting in the error (``predict``, ``visualize.image``)."""
    p = Path(target).expanduser()
    if not p.exists():
        raise ZooError(f"{option}={target}: no such file or folder")
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise ZooError(f"{option}={target}: not a regular file or a folder (a device or a pipe has no image to read)")
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ZooError(f"{option}={target}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in that folder")
    return files


def read_image(path: Path, transform: Callable[[Any], torch.Tensor]) -> torch.Tensor:
    """An image file through ``transform`` (an open PIL image -> C x H x W tensor). Every image a user names is
    read here, so a file too large to decode or not an image at all is refused in the same one line whoever
    reads it (a checkpoint's predict=, pretrained weights' predict=, visualize.image=)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # PIL warns of a large image; the check below refuses it in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)  # lazy: the header is read, the pixels are not yet decoded
        with im:
            if im.width * im.height > (Image.MAX_IMAGE_PIXELS or float("inf")):
                raise ZooError(f"predict: {path} is {im.width}x{im.height} pixels, more than the "
                               f"{Image.MAX_IMAGE_PIXELS} this decodes (resize it first)")
            return transform(im)
    except Image.DecompressionBombError as e:  # the header says far more pixels than MAX_IMAGE_PIXELS
        raise ZooError(f"predict: {path} is too large to decode ({e})") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ZooError(f"predict: {path} is not a readable image ({e.__class__.__name__})") from e


def checkpoint_transform(facts: Any) -> Callable[[Any], torch.Tensor]:
    """PIL image -> tensor as the checkpoint's data was fed (``facts``: zoo.checkpoint.Facts): its channels, size
    (resized, not cropped) and normalisation (and whitening)."""
    from PIL import Image

    channels, height, width = facts.input_shape[-3:]

    def transform(im: Any) -> torch.Tensor:
        im = im.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
        x = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
        x = x.view(height, width, -1).permute(2, 0, 1).float().div(255)  # C x H x W in [0, 1]
        return preprocess(x, facts.to_dict())  # normalised (and whitened) as training fed its data

    return transform


def load_image(path: Path, facts: Any) -> torch.Tensor:
    """A file as the checkpoint's data was fed (``facts``: zoo.checkpoint.Facts): its channels, size, normalisation."""
    return read_image(path, checkpoint_transform(facts))


def csv_cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``: a file or class name chosen by
    whoever made the data) with a leading ``'``, so it is shown as text; numbers are left as numbers."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def network(ckpt: dict[str, Any], record: Record) -> torch.nn.Module:
    """The checkpoint's network in eval mode, its weights checked to fit the record before it is built."""
    return record.build_network(state_dict_of(ckpt)).eval()


def label_threshold(record: Record) -> float:
    """A multi-label checkpoint's decision threshold: its loss's ``threshold`` (configs/loss/bce.yaml), which its
    metrics used in training."""
    loss = record.config("loss") or {}
    threshold = loss.get("threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ZooError(f"{record.source}: its loss threshold must be a number in [0, 1]; got {str(threshold)[:40]}")
    return float(threshold)


def predict(ckpt_path: str, target: str, topk: int, run_dir: Path) -> list[dict[str, Any]]:
    """Print the top-k classes with probabilities for each image (a multi-label checkpoint: the labels whose
    probability passes its threshold), and write ``run_dir/predictions.csv``."""
    ckpt, record = load_record(ckpt_path)
    facts = record.facts
    if facts.task == "language_model":
        raise ZooError(f"{ckpt_path} is a language model: sample text with prompt=TEXT sample_length=N instead")
    if facts.task not in ("classification", "multilabel") or len(facts.input_shape) != 3:
        raise ZooError(f"predict= needs an image classifier; {ckpt_path} was trained for {facts.task!r}")
    if len(facts.mean) not in (1, facts.input_shape[0]) or len(facts.std) not in (1, facts.input_shape[0]):
        raise ZooError(f"{ckpt_path}: facts.mean/std do not match its {facts.input_shape[0]} input channels")
    multilabel = facts.task == "multilabel"
    threshold = label_threshold(record) if multilabel else None
    files = image_files(target)
    names = list(facts.class_names)
    if len(names) != record.num_classes:
        names = [str(i) for i in range(record.num_classes)]
    return predict_files(network(ckpt, record), files, names, checkpoint_transform(facts), topk, run_dir,
                         threshold)


def predict_files(net: torch.nn.Module, files: list[Path], names: list[str],
                  transform: Callable[[Any], torch.Tensor], topk: int, run_dir: Path,
                  threshold: float | None = None) -> list[dict[str, Any]]:
    """What ``predict=`` does once the network is known, whoever supplies it (a checkpoint, pretrained weights):
    each of ``files`` read through ``transform`` (zoo.evaluate.read_image), 64 a batch on the device; per image
    the top-k of ``names`` with softmax probabilities, or with a ``threshold`` (a multi-label network) the
    labels whose sigmoid passes it; one printed line per image and ``run_dir/predictions.csv``."""
    device = _device()
    net = net.to(device)
    k = max(1, min(int(topk), len(names)))
    rows = []
    with torch.no_grad():
        for start in range(0, len(files), 64):
            chunk = files[start : start + 64]
            x = torch.stack([read_image(f, transform) for f in chunk]).to(device)
            logits = net(x).float()
            if threshold is not None:  # one sigmoid per label; a label is present when it passes the threshold
                for f, pr in zip(chunk, logits.sigmoid().cpu().tolist()):
                    present = [(n, p) for n, p in zip(names, pr) if p > threshold]
                    rows.append({"image": str(f), "labels": " ".join(n for n, _ in present),
                                 **{f"prob_{n}": round(p, 6) for n, p in zip(names, pr)}})
                    shown = ", ".join(f"{n} {p:.4f}" for n, p in present) or f"no label above {threshold}"
                    print(f"{f}: {shown}", flush=True)
                continue
            p, idx = logits.softmax(1).cpu().topk(k, dim=1)
            for f, pi, ii in zip(chunk, p.tolist(), idx.tolist()):
                row = {"image": str(f)}
                for r, (c, pr) in enumerate(zip(ii, pi), start=1):
                    row[f"class_{r}"], row[f"prob_{r}"] = names[c], round(pr, 6)
                rows.append(row)
                shown = ", ".join(f"{names[c]} {pr:.4f}" for c, pr in zip(ii, pi))
                print(f"{f}: {shown}", flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "predictions.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
    print(f"predictions: {run_dir / 'predictions.csv'}", flush=True)
    return rows


class Stacking:
    """A stacked ensemble (Wolpert 1992): multinomial logistic regression on the members' probabilities.

    The meta-classifier sees each sample as the members' class probabilities side by side (members x classes
    features) and learns how far to trust each member for each class. It is fitted on the validation split,
    which the members did not train on, so it learns how they generalise rather than how they memorised;
    LBFGS on the cross-entropy plus a little L2 (``l2 * |W|^2``), which keeps the weights finite when a member
    separates the classes perfectly.
    """

    def __init__(self, l2: float = 1e-3, max_iter: int = 200) -> None:
        self.l2, self.max_iter = l2, max_iter
        self.weight: torch.Tensor | None = None  # (members * classes) x classes
        self.bias: torch.Tensor | None = None  # classes

    @staticmethod
    def features(probs: torch.Tensor) -> torch.Tensor:
        """members x N x classes -> N x (members * classes): member 0's classes, then member 1's, ..."""
        return probs.permute(1, 0, 2).reshape(probs.shape[1], -1).double()

    def fit(self, probs: torch.Tensor, labels: torch.Tensor) -> Stacking:
        x, y = self.features(probs), labels.long()
        classes = probs.shape[2]
        w = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=self.max_iter, tolerance_grad=1e-9,
                                tolerance_change=1e-12, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(x @ w + b, y) + self.l2 * w.pow(2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        self.weight, self.bias = w.detach(), b.detach()
        return self

    def member_weights(self) -> torch.Tensor:
        """How much each member's probabilities move the decision: the norm of its block of weights."""
        assert self.weight is not None, "fit first"
        classes = self.weight.shape[1]
        return self.weight.view(-1, classes, classes).flatten(1).norm(dim=1)

    def predict(self, probs: torch.Tensor) -> torch.Tensor:
        assert self.weight is not None and self.bias is not None, "fit first"
        return (self.features(probs) @ self.weight + self.bias).argmax(1)


def combine(probs: torch.Tensor, mode: str, weights: torch.Tensor | None = None,
            stacker: Stacking | None = None) -> torch.Tensor:
    """Class predictions of an ensemble from member probabilities ``probs`` (members x N x classes).

    ``mean`` averages the softmax outputs; ``weighted`` averages them with ``weights``; ``vote`` takes
    the most common top-1 class, ties going to the class with the higher mean probability; ``stacking``
    asks a fitted :class:`Stacking` meta-classifier.
    """
    if mode == "stacking":
        if stacker is None:
            raise ZooError("ensemble=stacking needs its meta-classifier fitted on the validation split")
        return stacker.predict(probs)
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
    loaded = [load_record(p) for p in paths]
    ckpts, records = [c for c, _ in loaded], [r for _, r in loaded]
    first = records[0]
    for p, r in zip(paths[1:], records[1:]):
        if (r.facts.name, r.num_classes, r.facts.input_shape) != (first.facts.name, first.num_classes,
                                                                   first.facts.input_shape):
            raise ZooError(f"ensemble members must share their data: {paths[0]} is {first.facts.name} "
                           f"({first.num_classes} classes), {p} is {r.facts.name} ({r.num_classes} classes)")
    if first.task != "classification":
        raise ZooError(f"ensembles combine classifiers; {paths[0]} was trained for {first.task!r}")
    weights = None
    if mode == "weighted":
        accs = []
        for p, c in zip(paths, ckpts):
            acc = saved_val_metrics(c).get("val/acc")
            if acc is None:
                raise ZooError(f"ensemble=weighted needs each member's val/acc; {p} does not store one")
            if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0 <= acc <= 1:
                raise ZooError(f"{p}: its stored val/acc must be a number in [0, 1]; got {str(acc)[:40]}")
            accs.append(acc)
        weights = torch.tensor(accs)
    nets = [network(c, r) for c, r in loaded]  # every member checked before the data is built
    dm = first.datamodule(data_dir)
    device = _device()
    nets = [net.to(device) for net in nets]
    probs, y = member_probabilities(nets, dm.test_dataloader(), device)  # members x N x classes, N
    members = []
    for p, pr, r in zip(paths, probs, records):
        members.append({"checkpoint": str(Path(p).resolve()), "model": r.model,
                        "test/acc": (pr.argmax(1) == y).float().mean().item()})
    stacker, others = None, {}
    if mode == "stacking":  # fitted on the validation split; the other rules beside it, on the same test split
        val_loader = dm.val_dataloader() if hasattr(dm, "val_dataloader") else None
        val_probs, val_y = member_probabilities(nets, val_loader if val_loader is not None else [], device)
        if len(val_y) == 0:
            raise ZooError(f"ensemble=stacking fits on the validation split; {first.facts.name} has none here")
        stacker = Stacking().fit(val_probs, val_y)
        val_acc = (val_probs.argmax(2) == val_y).double().mean(1).float()  # each member's, on this split
        others = {rule: (combine(probs, rule, val_acc) == y).float().mean().item() for rule in ENSEMBLES[:3]}
        weights = stacker.member_weights().float()
    ens_acc = (combine(probs, mode, weights, stacker) == y).float().mean().item()
    metrics: dict[str, Any] = {"ensemble": mode, "members": members, "test/acc": ens_acc}
    if weights is not None:
        metrics["weights"] = (weights / weights.sum()).tolist()
    if others:
        metrics["val_samples"] = len(val_y)
        metrics["compare"] = {f"{rule}/test/acc": acc for rule, acc in others.items()}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    for m in members:
        print(f"member {m['model']:<12} test/acc={m['test/acc']:.4f}  {m['checkpoint']}", flush=True)
    for rule, acc in others.items():
        print(f"ensemble ({rule}, {len(nets)} members) test/acc={acc:.4f}", flush=True)
    print(f"ensemble ({mode}, {len(nets)} members) test/acc={ens_acc:.4f}\nrun directory: {run_dir}", flush=True)
    return metrics


def member_probabilities(nets: list[torch.nn.Module], loader: Any, device: torch.device
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each member's softmax over a split (members x N x classes) and the split's labels (N)."""
    member_probs: list[list[torch.Tensor]] = [[] for _ in nets]
    labels = []
    with torch.no_grad():
        for x, y in loader:
            x = x.to(device)
            for i, net in enumerate(nets):
                member_probs[i].append(net(x).float().softmax(1).cpu())
            labels.append(y.cpu())
    if not labels:
        return torch.empty(len(nets), 0, 0), torch.empty(0, dtype=torch.long)
    return torch.stack([torch.cat(p) for p in member_probs]), torch.cat(labels)


# -- eval.py ---------------------------------------------------------------------------------------------


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """``eval.py``: test a checkpoint on its data's test split, or predict images, test an ensemble, draw what a
    network learned (``visualize=``), or test published weights (``pretrained=``)."""
    from zoo.run import output_dir

    if cfg.get("pretrained"):  # published weights (zoo.pretrained): ImageNet val folder, or predict= class names
        from zoo.pretrained import evaluate_config

        return evaluate_config(cfg, output_dir(cfg))
    if not cfg.get("ckpt_path"):
        raise ZooError("eval.py needs ckpt_path=PATH to a checkpoint written by train.py")
    paths = OmegaConf.to_container(cfg.ckpt_path) if OmegaConf.is_list(cfg.ckpt_path) else cfg.ckpt_path
    if isinstance(paths, list) or cfg.get("ensemble"):  # ckpt_path=[A,B,C] ensemble=mean|vote|weighted
        paths = [str(p) for p in (paths if isinstance(paths, list) else [paths])]
        return evaluate_ensemble(paths, cfg.get("ensemble") or "mean", output_dir(cfg), cfg.get("data_dir"))
    if cfg.get("predict"):  # predict=IMAGE_OR_FOLDER: top-k classes and predictions.csv
        return {"predictions": predict(str(paths), str(cfg.predict), cfg.get("topk", 5), output_dir(cfg))}
    if cfg.get("visualize"):  # visualize=filters|features|gradcam|deconv|saliency: pictures, not test metrics
        from zoo.visualize import visualize

        v = OmegaConf.to_container(cfg.visualize, resolve=True)  # kind, image, layer, channels
        return {"figure": str(visualize(str(paths), **v, run_dir=output_dir(cfg), data_dir=cfg.get("data_dir")))}
    return test(cfg, str(paths))


def task_from_checkpoint(ckpt: dict[str, Any], record: Record) -> pl.LightningModule:
    """The LightningModule a checkpoint was trained as, rebuilt from its record, with its weights."""
    from zoo.training.tasks import task_class

    weights = state_dict_of(ckpt)
    record.check_weights(weights)  # one line, on the meta device, before anything is allocated
    task = task_class(record.task)(**record.task_arguments(weights))
    task.record = record
    try:
        task.load_state_dict({k: v for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}, strict=True)
    except RuntimeError as e:  # keys outside the network (a loss's class weights) that do not fit
        raise ZooError(f"{record.source}: weights do not fit its record ({' '.join(str(e).split())[:200]})") from None
    return task


def test(cfg: DictConfig, ckpt_path: str) -> dict[str, Any]:
    """Test a checkpoint on the test split of the data it was trained on; write ``metrics.json``."""
    from zoo.run import build_trainer, numbers, output_dir, report, write_metrics

    ckpt, record = load_record(ckpt_path)
    task = task_from_checkpoint(ckpt, record)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = record.datamodule(cfg.get("data_dir"))
    trainer = build_trainer(cfg, training=False, logger=False, enable_checkpointing=False, enable_model_summary=False)
    trainer.test(task, datamodule=dm, verbose=False)
    metrics = {"checkpoint": str(Path(ckpt_path).resolve())}
    metrics.update(numbers(trainer.callback_metrics, ("test/",)))
    run_dir = output_dir(cfg)
    write_metrics(run_dir, metrics)
    report(metrics, run_dir)
    if record.task == "language_model" and cfg.get("sample_length"):  # language models also write text
        sample_text(cfg, task, run_dir)
    return metrics


def sample_text(cfg: DictConfig, task: pl.LightningModule, run_dir: Path) -> str:
    """Continue ``cfg.prompt`` by ``cfg.sample_length`` characters at ``cfg.temperature``; print, save sample.txt."""
    temperature = float(cfg.get("temperature", 1.0))
    text = task.sample(str(cfg.get("prompt") or ""), int(cfg.sample_length), temperature)
    (run_dir / "sample.txt").write_text(text + "\n", encoding="utf-8")
    print(f"\nsample (temperature {temperature}):\n{text}", flush=True)
    return text
