"""Reading a run's TensorBoard event files back: scalars by tag, and the per-layer gradient norms of a run
(``python -m zoo.training.callbacks.tensorboard RUN``)."""

from __future__ import annotations

from pathlib import Path


def read_scalars(run_dir: str | Path, prefix: str = "") -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a run's TensorBoard event files whose tag starts with ``prefix``: ``{tag: [(step, value)]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for f in sorted(Path(run_dir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            if tag.startswith(prefix):
                out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def main(argv: list[str] | None = None) -> None:
    """The mean gradient norm of each layer's weights over the run in ``RUN_DIR``."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m zoo.training.callbacks.tensorboard RUN_DIR  (per-layer mean gradient norms)")
    norms = read_scalars(args[0], "grad_norm/")
    if not norms:
        raise SystemExit(f"error: no grad_norm/* scalars under {args[0]} (was callbacks.diagnostics on?)")
    for tag, values in norms.items():
        if tag.endswith(".weight") or tag.endswith("total"):
            print(f"{tag[len('grad_norm/'):]:32s} {sum(v for _, v in values) / len(values):.3e}")


if __name__ == "__main__":
    main()
