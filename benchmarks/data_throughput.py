"""Images per second of the in-memory batched pipeline vs torchvision's per-sample pipeline, on CPU.

Both sides apply the ``standard`` CIFAR augmentation (random crop with 4 pixels of zero padding,
horizontal flip, uint8 -> float, normalisation) to CIFAR-shaped data and hand out batches:

- ours: ``zoo.datamodules.base.TensorBatches`` over one uint8 (N, 3, 32, 32) tensor, augmented a batch at a
  time by ``zoo.datamodules.augment.Augment`` (per-sample random crop offsets and flips);
- torchvision: the usual pipeline, a Dataset that makes a PIL image per sample as
  ``torchvision.datasets.CIFAR10.__getitem__`` does, ``transforms.v2`` RandomCrop/RandomHorizontalFlip/
  ToImage/ToDtype/Normalize per sample, in a DataLoader with ``--workers`` worker processes;
- kornia (for the record, why augment.py is hand-written): ``kornia.augmentation`` RandomCrop(padding=4) +
  RandomHorizontalFlip + Normalize on the same float batches.

    python benchmarks/data_throughput.py            # 10,000 images, batch 512, 2 workers
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.datamodules.augment import Augment, make_knobs  # noqa: E402
from zoo.datamodules.base import Split, TensorBatches  # noqa: E402

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class PILCifar(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per sample: HWC uint8 array -> PIL image -> transform."""

    def __init__(self, data: np.ndarray, labels: np.ndarray, transform) -> None:
        self.data, self.labels, self.transform = data, labels, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[i])), int(self.labels[i])


def images_per_second(batches, n: int, epochs: int) -> float:
    """The best epoch's rate (as ``timeit`` takes the minimum): the machine is shared, and other jobs only
    ever make an epoch slower."""
    for _ in batches:  # warm-up epoch: worker start-up, allocator, first-call costs
        pass
    best = 0.0
    for _ in range(epochs):
        start, seen = time.perf_counter(), 0
        for x, _ in batches:
            seen += len(x)
        assert seen == n
        best = max(best, seen / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per side; the best counts")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (args.n, 32, 32, 3), dtype=np.uint8)  # HWC, as CIFAR's pickles decode
    labels = rng.integers(0, 10, args.n)

    # ours: one uint8 tensor, batched augmentation
    split = Split(torch.from_numpy(data).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels))
    pipeline = Augment(MEAN, STD, 10, make_knobs("standard", "objects"))
    ours = images_per_second(TensorBatches(split, args.batch_size, pipeline.images, shuffle=True), args.n, args.epochs)

    # torchvision: per-sample transforms.v2 in DataLoader workers
    from torchvision.transforms import v2

    tv_transform = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), v2.ToImage(),
                               v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])
    loader = torch.utils.data.DataLoader(PILCifar(data, labels, tv_transform), batch_size=args.batch_size,
                                         shuffle=True, num_workers=args.workers,
                                         persistent_workers=args.workers > 0)
    tv = images_per_second(loader, args.n, args.epochs)

    # kornia (not a dependency; timed when installed): batched too, on the same float batches
    try:
        import kornia.augmentation as K
    except ImportError:
        kor = float("nan")
    else:
        kornia_aug = K.AugmentationSequential(K.RandomCrop((32, 32), padding=4), K.RandomHorizontalFlip(),
                                              K.Normalize(torch.tensor(MEAN), torch.tensor(STD)))

        def kornia_transform(x: torch.Tensor) -> torch.Tensor:
            return kornia_aug(x.float().div_(255))

        kor = images_per_second(TensorBatches(split, args.batch_size, kornia_transform, shuffle=True), args.n,
                                args.epochs)

    print(f"CPU threads: {torch.get_num_threads()}, {args.n} images, batch {args.batch_size}, "
          f"standard CIFAR augmentation (crop pad 4 + flip + normalise), best of {args.epochs} epochs")
    print(f"ours (in-memory, batched):                 {ours:12,.0f} images/s")
    print(f"torchvision v2 per sample, {args.workers} workers:      {tv:12,.0f} images/s")
    print(f"kornia.augmentation (batched):             {kor:12,.0f} images/s")
    print(f"ratio ours / torchvision: {ours / tv:.1f}x    ours / kornia: {ours / kor:.1f}x")


if __name__ == "__main__":
    main()
