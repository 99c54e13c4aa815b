"""What Lightning and our callbacks cost: ``train.py``'s fit against a minimal plain PyTorch loop.

Both sides train LeNet-5 for the same epochs on the same MNIST-sized data (the 4,000 embedded training
digits tiled to 60,000, validation 10,000), held on the same device, with the same batch size, Adam,
per-epoch cosine schedule, and compute the same numbers: each epoch's mean training loss and accuracy,
then a validation pass with loss, top-1 and top-5 accuracy. The Lightning side is built exactly as
``train.py`` builds it (default callbacks: checkpoints, LR monitor, progress bar, model summary,
diagnostics, NaN guard; TensorBoard logger), and only ``trainer.fit`` is timed on both sides; start-up is
the same for both and left out. Rounds alternate the two sides. The ratio is of each side's fastest
round: on a shared machine noise only ever adds time (the medians are printed too). Wall and CPU time
(all threads of the process: a background thread's work counts) are both reported.

    python benchmarks/loop.py [--epochs 2] [--rounds 5] [--train-size 60000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from datamodules.base import Split, TensorBatches
from datamodules.vision import MNISTTiny
from zoo import create_model
from zoo.cli import CONFIG_DIR
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


def lightning_fit(epochs: int, batch: int, device: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[
            f"trainer.max_epochs={epochs}", f"data.batch_size={batch}", f"trainer.accelerator={device}",
            f"paths.output_dir={tmp}", *OVERRIDES,
        ])
        dm = MNISTSized(batch_size=batch, eval_batch_size=cfg.data.eval_batch_size, seed=cfg.seed)
        dm.setup()
        task = build_task(cfg, dm)
        trainer = build_trainer(cfg)
        t, c = time.perf_counter(), time.process_time()
        trainer.fit(task, datamodule=dm)
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--train-size", type=int, default=60000)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--override", action="append", default=[], help="a train.py override for the Lightning side")
    args = p.parse_args()
    SIZES["train"] = args.train_size
    OVERRIDES.extend(args.override)
    times: dict[str, list[tuple[float, float]]] = {"lightning": [], "plain": []}  # (wall s, CPU s) per round
    lightning_fit(1, args.batch, args.device)  # warm-up: imports, allocator, first-call costs
    for r in range(args.rounds):
        for side in (("plain", "lightning") if r % 2 == 0 else ("lightning", "plain")):
            fn = plain_fit if side == "plain" else lightning_fit
            times[side].append(fn(args.epochs, args.batch, args.device))
            print(f"round {r} {side}: {times[side][-1][0]:.2f} s wall, {times[side][-1][1]:.2f} s CPU", flush=True)
    print(f"\ndevice={args.device} epochs={args.epochs} train={args.train_size} batch={args.batch} "
          f"threads={torch.get_num_threads()} rounds={args.rounds}")
    for i, clock in enumerate(("wall", "CPU")):
        plain, light = ([t[i] for t in times[k]] for k in ("plain", "lightning"))
        mp, ml = statistics.median(plain), statistics.median(light)
        print(f"{clock:4s} median: plain loop {mp:.2f} s, train.py fit {ml:.2f} s, {100 * (ml / mp - 1):+.1f}%")
        print(f"{clock:4s} fastest: plain loop {min(plain):.2f} s, train.py fit {min(light):.2f} s, "
              f"overhead {100 * (min(light) / min(plain) - 1):+.1f}% (target: at most +5%)")


if __name__ == "__main__":
    main()
