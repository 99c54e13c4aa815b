"""What Lightning and our callbacks cost: ``train.py``'s fit against a minimal plain PyTorch loop.

Both sides train LeNet-5 for the same epochs on the same MNIST-sized data (the 4,000 embedded training
digits tiled to 60,000, validation 10,000), held on the same device, with the same batch size, Adam,
per-epoch cosine schedule, and compute the same numbers: each epoch's mean training loss and accuracy,
then a validation pass with loss, top-1 and top-5 accuracy. The Lightning side is built exactly as
``train.py`` builds it (default callbacks: checkpoints, LR monitor, progress bar, model summary,
diagnostics, NaN guard; TensorBoard logger), and only ``trainer.fit`` is timed on both sides; start-up is
the same for both and left out. A third side, ``bare``, is the plain loop written as the smallest
LightningModule (no callbacks, logger, progress bar or summary): it separates Lightning's own cost from
ours. Each round runs the sides back to back, in rotating order; an overhead is the median over rounds
of the ratio of two sides' times, which a shared machine's speed drifting over minutes affects least
(medians and fastest runs are printed too). Wall and CPU time (all threads of the process: a background
thread's work counts) are both reported.

    python benchmarks/loop.py [--epochs 2] [--rounds 5] [--train-size 60000] [--variant "OVERRIDES" ...]

``--variant "callbacks.diagnostics=null"`` adds a side: ``train.py`` with those overrides, timed in the same
rounds, so what one callback or setting costs is measured against the same bare side. ``--only SIDE`` runs
one side alone (after its warm-up), for a profiler: benchmarks/spy_split.py reads two py-spy recordings
and says where the sides' time differs.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from zoo import create_model
from zoo.cli import CONFIG_DIR
from zoo.datamodules.base import Split, TensorBatches
from zoo.datamodules.vision import MNISTTiny
from zoo.run import build_task, build_trainer

SIZES = {"train": 60000, "val": 10000}


class MNISTSized(MNISTTiny):
    """The embedded digits tiled to MNIST's size, so an epoch is as long as a real MNIST epoch."""

    def load_splits(self) -> dict[str, Split]:
        small = super().load_splits()
        out = {}
        for name, split in small.items():
            n = SIZES.get(name, len(split))
            reps = -(-n // len(split))
            out[name] = Split(split.x.repeat(reps, 1, 1, 1)[:n], split.y.repeat(reps)[:n])
        return out


OVERRIDES: list[str] = []  # extra train.py overrides (--override), e.g. callbacks.diagnostics=null


def lightning_fit(epochs: int, batch: int, device: str, extra: tuple[str, ...] = ()) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[
            f"trainer.max_epochs={epochs}", f"data.batch_size={batch}", f"trainer.accelerator={device}",
            f"paths.output_dir={tmp}", *OVERRIDES, *extra,
        ])
        dm = MNISTSized(batch_size=batch, eval_batch_size=cfg.data.eval_batch_size, seed=cfg.seed)
        dm.setup()
        task = build_task(cfg, dm)
        trainer = build_trainer(cfg)
        t, c = time.perf_counter(), time.process_time()
        trainer.fit(task, datamodule=dm)
        return time.perf_counter() - t, time.process_time() - c


class BareLightning(pl.LightningModule):
    """The plain loop as the smallest LightningModule: Lightning's own cost, without ours."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.net = create_model("lenet5", num_classes=10, in_channels=1)
        self.epochs = epochs

    def on_train_epoch_start(self) -> None:
        self.sums = torch.zeros(3, device=self.device)  # loss * n, correct, n

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        self.sums += torch.stack([loss.detach() * len(y), (logits.detach().argmax(1) == y).sum(), y.new_tensor(len(y))])
        return loss

    def on_train_epoch_end(self) -> None:
        _ = (self.sums[:2] / self.sums[2]).tolist()  # train loss and accuracy

    def on_validation_epoch_start(self) -> None:
        self.val_sums = torch.zeros(4, device=self.device)  # loss * n, correct, correct in top 5, n

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        self.val_sums += torch.stack([F.cross_entropy(logits, y) * len(y), (logits.argmax(1) == y).sum(),
                                      (logits.topk(5, 1).indices == y[:, None]).any(1).sum(), y.new_tensor(len(y))])

    def on_validation_epoch_end(self) -> None:
        _ = (self.val_sums[:3] / self.val_sums[3]).tolist()  # val loss, top-1, top-5

    def configure_optimizers(self) -> dict:
        opt = torch.optim.Adam(self.parameters(), lr=1e-3)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)}


def bare_fit(epochs: int, batch: int, device: str) -> tuple[float, float]:
    dm = MNISTSized(batch_size=batch, eval_batch_size=500)
    dm.setup()
    trainer = pl.Trainer(max_epochs=epochs, accelerator=device, devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    module = BareLightning(epochs)
    t, c = time.perf_counter(), time.process_time()
    trainer.fit(module, datamodule=dm)
    return time.perf_counter() - t, time.process_time() - c


def plain_fit(epochs: int, batch: int, device: str) -> tuple[float, float]:
    dm = MNISTSized(batch_size=batch, eval_batch_size=500)
    dm.setup()
    dev = torch.device(device)
    train, val = dm.splits["train"].to(dev), dm.splits["val"].to(dev)
    model = create_model("lenet5", num_classes=10, in_channels=1).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    t, c = time.perf_counter(), time.process_time()
    for epoch in range(epochs):
        model.train()
        order = TensorBatches(train, batch, dm.train_transform(), shuffle=True, seed=0, epoch=lambda e=epoch: e)
        loss_sum, correct = torch.zeros((), device=dev), torch.zeros((), device=dev)
        for x, y in order:
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
        sched.step()
        _ = (loss_sum / len(train)).item(), (correct / len(train)).item()  # train loss and accuracy
        model.eval()
        loss_sum, correct, correct5 = (torch.zeros((), device=dev) for _ in range(3))
        with torch.no_grad():
            for x, y in TensorBatches(val, 500, dm.eval_transform()):
                logits = model(x)
                loss_sum += F.cross_entropy(logits, y) * len(y)
                correct += (logits.argmax(1) == y).sum()
                correct5 += (logits.topk(5, 1).indices == y[:, None]).any(1).sum()
        _ = [(v / len(val)).item() for v in (loss_sum, correct, correct5)]  # val loss, top-1, top-5
    return time.perf_counter() - t, time.process_time() - c


def timed_round(fit: Any, epochs: int, batch: int, device: str) -> tuple[float, float]:
    """One side's fit in a round: a frame of its own, so that a profile (benchmarks/spy_split.py) can tell the
    rounds from the warm-up."""
    return fit(epochs, batch, device)


def _overhead(times: dict[str, list[float]], a: str, b: str) -> float:
    """The median over rounds of b's time over a's, as a percentage over 1."""
    return 100 * (statistics.median(y / x for x, y in zip(times[a], times[b])) - 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--train-size", type=int, default=60000)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--override", action="append", default=[], help="a train.py override for the Lightning side")
    p.add_argument("--variant", action="append", default=[], metavar="OVERRIDES",
                   help="one more side: train.py with these space-separated overrides, timed in the same rounds")
    p.add_argument("--only", choices=("plain", "bare", "train.py"),
                   help="run this side alone (to be profiled: benchmarks/spy_split.py); no overheads are printed")
    args = p.parse_args()
    SIZES["train"] = args.train_size
    OVERRIDES.extend(args.override)
    fits = {"plain": plain_fit, "bare": bare_fit, "train.py": lightning_fit}
    for v in args.variant:
        fits[f"train.py {v}"] = functools.partial(lightning_fit, extra=tuple(v.split()))
    if args.only:
        fits = {args.only: fits[args.only]}
    times: dict[str, list[tuple[float, float]]] = {side: [] for side in fits}  # (wall s, CPU s) per round
    if args.only in (None, "train.py"):
        lightning_fit(1, args.batch, args.device)  # warm-up: imports, allocator, first-call costs
    if args.only in (None, "bare"):
        bare_fit(1, args.batch, args.device)
    if args.only == "plain":
        plain_fit(1, args.batch, args.device)
    sides = list(fits)
    for r in range(args.rounds):
        k = r % len(sides)
        for side in sides[k:] + sides[:k]:  # each side takes each place in a round in turn
            times[side].append(timed_round(fits[side], args.epochs, args.batch, args.device))
            print(f"round {r} {side}: {times[side][-1][0]:.3f} s wall, {times[side][-1][1]:.3f} s CPU", flush=True)
    if args.only:
        return
    print(f"\ndevice={args.device} epochs={args.epochs} train={args.train_size} batch={args.batch} "
          f"threads={torch.get_num_threads()} rounds={args.rounds}")
    for i, clock in enumerate(("wall", "CPU")):
        t = {side: [x[i] for x in v] for side, v in times.items()}

        print(f"{clock:4s} overhead {_overhead(t, 'plain', 'train.py'):+.1f}% (train.py over the plain loop, median "
              f"of the rounds' ratios; target: at most +5%); Lightning alone {_overhead(t, 'plain', 'bare'):+.1f}%, "
              f"ours on top of it {_overhead(t, 'bare', 'train.py'):+.1f}%")
        print(f"{clock:4s} medians: " + ", ".join(f"{k} {statistics.median(v):.2f} s" for k, v in t.items())
              + "; fastest: " + ", ".join(f"{k} {min(v):.2f} s" for k, v in t.items()))
        for side in fits:
            if side.startswith("train.py "):
                print(f"{clock:4s} {side}: {_overhead(t, 'bare', side):+.1f}% over bare, "
                      f"{_overhead(t, 'train.py', side):+.1f}% against train.py")


if __name__ == "__main__":
    main()
