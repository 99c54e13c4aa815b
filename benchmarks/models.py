"""Training-step throughput of zoo models against their torchvision counterparts, in one process.

Each step is forward + cross-entropy + backward + SGD step on a fixed random batch. Both sides get
the same input size, batch, device and variant (plain, channels_last, torch.compile); their runs are
interleaved, and each side's fastest round is kept (on a shared machine noise only ever adds time).
Before the first model the process is warmed up for a few seconds (thread pool, allocator, oneDNN or
cuDNN kernels), so the first model timed is not an outlier.
The printed ratio is zoo images/s over torchvision images/s: at least 0.98 means ours is no slower.

    python benchmarks/models.py                                 # CPU-sized defaults
    python benchmarks/models.py --device cuda --size 224 --batch 64 --variants plain channels_last compile
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision
from torch import nn

import zoo
from zoo.registry import entry

DEFAULT_MODELS = ["alexnet", "vgg11", "googlenet", "inception_v3", "resnet18", "resnet50",
                  "resnext50_32x4d", "densenet121", "shufflenet_v2_x1_0", "swin_t", "vit_b_16"]


def _step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp: bool):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x)
            if not isinstance(out, torch.Tensor):  # aux heads in training mode (ours or torchvision's)
                out = out[0]
            loss = loss_fn(out, y)
        loss.backward()
        opt.step()

    return step


def _time(step, steps: int, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return time.perf_counter() - t


def _warm_up(device: torch.device, size: int, batch: int, seconds: float = 3.0) -> None:
    """Train a torchvision ResNet-18 for a few seconds: the costs a process pays once are paid here."""
    model = torchvision.models.resnet18(weights=None).to(device).train()
    x = torch.randn(batch, 3, size, size, device=device)
    step = _step_fn(model, x, torch.zeros(batch, dtype=torch.long, device=device), amp=False)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        _time(step, 1, device)


def _build(name: str, variant: str, device: torch.device, size: int) -> tuple[nn.Module, nn.Module]:
    tv_name = entry(name).torchvision
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    ours_kwargs = {"aux_logits": False} if kwargs else {}
    if entry(name).family == "vit":  # torchvision's ViT takes only the image size it was built for
        kwargs = ours_kwargs = {"image_size": size}
    ours = zoo.create_model(name, num_classes=1000, **ours_kwargs)
    theirs = getattr(torchvision.models, tv_name)(weights=None, **kwargs)
    theirs.load_state_dict(ours.state_dict())  # same weights, so both do the same arithmetic
    pair = []
    for m in (ours, theirs):
        m = m.to(device).train()
        if variant in ("channels_last", "compile"):
            m = m.to(memory_format=torch.channels_last)
        if variant == "compile":
            m.compile()
        pair.append(m)
    return pair[0], pair[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    p.add_argument("--variants", nargs="+", default=["plain", "channels_last"],
                   choices=["plain", "channels_last", "compile"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, default=96, help="input height = width (inception_v3 gets at least 96)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of process warm-up before the first model")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True

    print(f"device={device} batch={args.batch} size={args.size} steps={args.steps} rounds={args.rounds} "
          f"bf16={args.bf16} torch={torch.__version__} threads={torch.get_num_threads()}")
    _warm_up(device, args.size, args.batch, args.warmup)
    print("| model | variant | zoo img/s | torchvision img/s | ratio |\n|---|---|---|---|---|")
    ratios = []
    for name in args.models:
        size = max(args.size, 96) if name == "inception_v3" else args.size
        for variant in args.variants:
            torch.manual_seed(0)
            ours, theirs = _build(name, variant, device, size)
            x = torch.randn(args.batch, 3, size, size, device=device)
            if variant != "plain":
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, 1000, (args.batch,), device=device)
            steps = {"zoo": _step_fn(ours, x, y, args.bf16), "tv": _step_fn(theirs, x, y, args.bf16)}
            for s in steps.values():  # warm-up: allocator, cuDNN autotuning, compilation
                s(), s()
            times: dict[str, list[float]] = {"zoo": [], "tv": []}
            for r in range(args.rounds):
                order = ("zoo", "tv") if r % 2 == 0 else ("tv", "zoo")
                for side in order:
                    times[side].append(_time(steps[side], args.steps, device))
            ips = {k: args.batch * args.steps / min(v) for k, v in times.items()}
            ratio = ips["zoo"] / ips["tv"]
            ratios.append(ratio)
            print(f"| {name} | {variant} | {ips['zoo']:.1f} | {ips['tv']:.1f} | {ratio:.3f} |", flush=True)
    print(f"\nminimum ratio {min(ratios):.3f}, median {statistics.median(ratios):.3f} (target: >= 0.98)")


if __name__ == "__main__":
    main()
