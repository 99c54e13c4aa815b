"""Throughput of the fused recurrent kernels (torch.nn, cuDNN on a GPU) against the gate-by-gate reference.

Both paths run the same weights (one model, ``impl`` switched in between) on the same batches, forward and
backward, in one process, and the script prints sequences per second for each and their ratio:

    python benchmarks/rnn_fused_vs_reference.py --cell lstm --hidden 128 --seq-len 100 --batch 64
    python benchmarks/rnn_fused_vs_reference.py --device cuda --batch 256 --layers 2
"""

from __future__ import annotations

import argparse
import time

import torch

import zoo


def _time(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, warmup: int) -> float:
    """Seconds per forward + backward step, after ``warmup`` untimed steps."""
    loss_fn = torch.nn.CrossEntropyLoss()
    for i in range(warmup + steps):
        if i == warmup:
            if x.is_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
    if x.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cell", choices=["rnn", "lstm", "gru"], default="lstm")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--bidirectional", action="store_true")
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--features", type=int, default=28)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = zoo.create_model(
        args.cell, num_classes=10, in_channels=args.features, hidden_size=args.hidden,
        num_layers=args.layers, bidirectional=args.bidirectional,
    ).to(device)  # fmt: skip
    x = torch.randn(args.batch, args.seq_len, args.features, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)

    seconds = {}
    for impl in ("fused", "reference"):
        model.rnn.impl = impl  # same parameters, other code path
        seconds[impl] = _time(model, x, y, args.steps, args.warmup)
        print(f"{impl:>9}: {seconds[impl] * 1e3:9.2f} ms/step  {args.batch / seconds[impl]:10.1f} sequences/s")
    print(
        f"{args.cell} hidden={args.hidden} layers={args.layers} T={args.seq_len} batch={args.batch} "
        f"on {device}: fused is {seconds['reference'] / seconds['fused']:.2f}x the reference's throughput"
    )


if __name__ == "__main__":
    main()
