"""Datamodules read the real on-disk formats (small files written by tests/fake_data.py), split them with a
seed, fail with one clear line on missing or corrupt files, balance classes and shard for DDP."""

from __future__ import annotations

import gzip
import pickle
import types
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import ROOT, run_cli
from fake_data import write_cifar10, write_cifar100, write_imagefolder, write_mnist, write_svhn
from torch.utils.data import DistributedSampler

from zoo.datamodules.base import InMemoryDataModule, Split, TensorBatches
from zoo.datamodules.vision import CIFAR10, CIFAR100, KMNIST, MNIST, SVHN, Digits, FashionMNIST, MNISTTiny
from zoo.errors import ZooError


def _all_train(dm: InMemoryDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    """Train + val back together, sorted by a per-image key, to compare with the written training set."""
    x = torch.cat([dm.splits["train"].x, dm.splits["val"].x])
    y = torch.cat([dm.splits["train"].y, dm.splits["val"].y])
    order = _order(x.numpy())
    return x[order], y[order]


def _order(x: np.ndarray) -> np.ndarray:
    return np.lexsort(x.reshape(len(x), -1).T[::-1])


def _assert_round_trip(dm: InMemoryDataModule, written: dict) -> None:
    xt, yt = written["test"]
    assert torch.equal(dm.splits["test"].x, torch.from_numpy(xt))
    assert torch.equal(dm.splits["test"].y, torch.from_numpy(yt))
    x, y = written["train"]
    o = _order(x)
    got_x, got_y = _all_train(dm)
    assert torch.equal(got_x, torch.from_numpy(x[o])) and torch.equal(got_y, torch.from_numpy(y[o]))
    assert dm.splits["train"].x.dtype == torch.uint8 and tuple(dm.splits["train"].x.shape[1:]) == dm.input_shape


@pytest.mark.parametrize("cls,folder,gz", [(MNIST, "MNIST", True), (FashionMNIST, "FashionMNIST", False),
                                           (KMNIST, "KMNIST", True)])
def test_mnist_family_round_trip(tmp_path: Path, cls: type, folder: str, gz: bool) -> None:
    written = write_mnist(tmp_path, folder, n_train=50, n_test=20, gz=gz)
    dm = cls(data_dir=tmp_path, val_size=10)
    dm.setup()
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [40, 10, 20]
    _assert_round_trip(dm, written)
    assert dm.num_classes == 10 and dm.input_shape == (1, 28, 28) and len(dm.class_names) == 10
    assert dm.class_names[0] == {"MNIST": "0", "FashionMNIST": "T-shirt/top", "KMNIST": "o"}[folder]


def test_split_is_seeded(tmp_path: Path) -> None:
    write_mnist(tmp_path, "MNIST", n_train=60)
    a, b, c = (MNIST(data_dir=tmp_path, val_size=0.25, split_seed=s) for s in (0, 0, 1))
    for dm in (a, b, c):
        dm.setup()
    assert len(a.splits["val"]) == 15
    assert torch.equal(a.splits["val"].x, b.splits["val"].x)
    assert not torch.equal(a.splits["val"].x, c.splits["val"].x)
    with pytest.raises(ZooError, match="data.val_size"):
        dm = MNIST(data_dir=tmp_path, val_size=600)
        dm.setup()


def test_cifar10_round_trip_with_class_names_from_the_meta_file(tmp_path: Path) -> None:
    written = write_cifar10(tmp_path)
    dm = CIFAR10(data_dir=tmp_path, val_size=20)
    dm.setup()
    _assert_round_trip(dm, written)
    assert dm.class_names == written["classes"] and dm.facts()["class_names"] == written["classes"]
    assert dm.input_shape == (3, 32, 32) and len(dm.splits["train"]) == 80


def test_cifar100_fine_labels_round_trip(tmp_path: Path) -> None:
    written = write_cifar100(tmp_path, n_train=120, n_test=100)
    dm = CIFAR100(data_dir=tmp_path)
    dm.setup()
    _assert_round_trip(dm, written)
    assert dm.num_classes == 100 and dm.class_names == written["classes"]


def test_svhn_round_trip_maps_label_10_to_digit_0(tmp_path: Path) -> None:
    written = write_svhn(tmp_path)
    assert (written["test"][1] == 0).any()
    dm = SVHN(data_dir=tmp_path)
    dm.setup()
    _assert_round_trip(dm, written)


def test_digits_upsampled_and_split() -> None:
    dm = Digits(image_size=32)
    dm.setup()
    assert dm.input_shape == (1, 32, 32) and dm.splits["train"].x.shape[1:] == (1, 32, 32)
    assert sum(len(s) for s in dm.splits.values()) == 1797
    from sklearn.datasets import load_digits

    d = load_digits()
    small = torch.nn.functional.adaptive_avg_pool2d(dm.splits["test"].x[:20].float() / 255, 8)
    # each test image, pooled back to 8 x 8, is closest to one of the originals with its label
    originals = torch.from_numpy(d.images).float() / 16
    nearest = torch.cdist(small.flatten(1), originals.flatten(1)).argmin(1)
    assert torch.equal(torch.from_numpy(d.target[nearest.numpy()]), dm.splits["test"].y[:20])


def test_mnist_tiny_split_is_unchanged() -> None:
    dm = MNISTTiny()
    dm.setup()
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [4000, 500, 500]
    assert dm.train_transform()(dm.splits["train"].x[:4]).shape == (4, 1, 28, 28)
    assert torch.equal(dm.train_transform()(dm.splits["train"].x[:4]), dm.eval_transform()(dm.splits["train"].x[:4]))


# -- missing and corrupt data -----------------------------------------------------------------
def test_missing_data_names_where_it_looked_and_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(ZooError) as e:
        CIFAR10(data_dir=tmp_path).setup()
    msg = str(e.value)
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_1") in msg
    assert f"python train.py data=cifar10 data.data_dir={tmp_path} data.download=true" in msg
    with pytest.raises(ZooError, match=r"svhn not found.*data=svhn"):
        SVHN(data_dir=tmp_path).setup()


def test_failed_download_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(ZooError, match=r"could not download mnist to .*Network is unreachable"):
        MNIST(data_dir=tmp_path, download=True).setup()


def test_truncated_gzip_is_reported_as_corrupt(tmp_path: Path) -> None:
    write_mnist(tmp_path, "MNIST")
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ZooError, match="train-images-idx3-ubyte.gz is corrupt"):
        MNIST(data_dir=tmp_path).setup()


def test_idx_file_with_a_wrong_size_is_reported(tmp_path: Path) -> None:
    write_mnist(tmp_path, "MNIST", gz=False)
    path = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ZooError, match="header says"):
        MNIST(data_dir=tmp_path).setup()


def test_cifar_wrong_shape_and_code_running_pickles_are_refused(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    with open(path, "wb") as f:
        pickle.dump({"data": np.zeros((20, 1024), np.uint8), "labels": [0] * 20}, f, protocol=2)
    with pytest.raises(ZooError, match=r"data_batch_3 is corrupt.*\(20, 1024\)"):
        CIFAR10(data_dir=tmp_path).setup()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(path, "wb") as f:
        pickle.dump({"data": Evil()}, f, protocol=2)
    with pytest.raises(ZooError, match=r"refusing to load (__builtin__|builtins).print"):
        CIFAR10(data_dir=tmp_path).setup()


def test_truncated_svhn_mat_is_reported(tmp_path: Path) -> None:
    write_svhn(tmp_path)
    path = tmp_path / "test_32x32.mat"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ZooError, match="test_32x32.mat is corrupt"):
        SVHN(data_dir=tmp_path).setup()


def test_wrong_labels_are_reported(tmp_path: Path) -> None:
    write_mnist(tmp_path, "MNIST", gz=False)
    path = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[-1] = 42
    path.write_bytes(bytes(data))
    with pytest.raises(ZooError, match="labels outside 0..9"):
        MNIST(data_dir=tmp_path).setup()


def test_missing_data_through_train_py_is_one_line_and_exit_2(tmp_path: Path) -> None:
    r = run_cli("train.py", "data=cifar10", f"data.data_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}",
                timeout=600)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cifar10 not found"), r.stderr[-2000:]
    assert f"python train.py data=cifar10 data.data_dir={tmp_path} data.download=true" in lines[0]
    assert "Traceback" not in r.stderr


# -- class balance ----------------------------------------------------------------------------
class _Toy(InMemoryDataModule):
    """An imbalanced toy set: 90 of class 0, 9 of class 1, 1 of class 2."""

    name, num_classes, input_shape, mean, std = "toy", 3, (1, 2, 2), (0.5,), (0.5,)

    def load_splits(self) -> dict[str, Split]:
        y = torch.tensor([0] * 90 + [1] * 9 + [2] * 1)
        x = torch.randint(0, 256, (100, 1, 2, 2), dtype=torch.uint8)
        return {"train": Split(x, y), "val": Split(x[:10], y[:10]), "test": Split(x[:10], y[:10])}


def test_class_weights_match_scikit_learns_balanced() -> None:
    from sklearn.utils.class_weight import compute_class_weight

    dm = _Toy()
    y = dm.splits["train"].y.numpy() if dm.splits else (dm.setup() or dm.splits["train"].y.numpy())
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    assert torch.allclose(dm.class_weights(), torch.tensor(expected, dtype=torch.float32))


def test_balanced_sampler_balances_the_classes() -> None:
    dm = _Toy(batch_size=50, balanced_sampler=True)
    counts = torch.zeros(3)
    batches = dm.train_dataloader()
    for epoch in range(20):
        batches.epoch = lambda e=epoch: e
        for _, y in batches:
            counts += torch.bincount(y, minlength=3)
    share = counts / counts.sum()
    assert bool(((share > 0.28) & (share < 0.39)).all()), share  # unbalanced: 0.90 / 0.09 / 0.01
    plain = _Toy(batch_size=50)
    y = torch.cat([b[1] for b in plain.train_dataloader()])
    assert torch.equal(torch.bincount(y, minlength=3), torch.tensor([90, 9, 1]))


def test_loss_weight_balanced_reaches_the_loss() -> None:
    from hydra import compose, initialize_config_dir

    from zoo.run import build_task

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["loss.weight=balanced"])
    dm = _Toy()
    task = build_task(cfg, dm)
    assert torch.allclose(task.criterion.weight, dm.class_weights(), atol=1e-5)
    assert task.hparams.loss["weight"] == pytest.approx(dm.class_weights().tolist(), abs=1e-5)


# -- the device pipeline and DDP sharding ------------------------------------------------------
def _trainer(rank: int, world: int, epoch: int = 0) -> types.SimpleNamespace:
    return types.SimpleNamespace(global_rank=rank, world_size=world, current_epoch=epoch, training=True,
                                 strategy=types.SimpleNamespace(root_device=torch.device("cpu")))


@pytest.mark.parametrize("n", [100, 101])
def test_ddp_shards_are_those_of_distributed_sampler(n: int) -> None:
    split = Split(torch.arange(n).view(n, 1, 1, 1).to(torch.uint8), torch.arange(n))
    for epoch in (0, 3):
        shards = []
        for rank in (0, 1):
            batches = TensorBatches(split, 16, lambda x: x, shuffle=True, seed=7, epoch=lambda e=epoch: e,
                                    rank=rank, world_size=2)
            got = torch.cat([y for _, y in batches])
            sampler = DistributedSampler(range(n), num_replicas=2, rank=rank, shuffle=True, seed=7)
            sampler.set_epoch(epoch)
            assert got.tolist() == list(sampler)
            assert len(batches) == -(-len(got) // 16)
            shards.append(set(got.tolist()))
        assert shards[0] | shards[1] == set(range(n))  # covering
        assert len(shards[0] & shards[1]) == (n % 2)  # disjoint, but for DistributedSampler's one padded repeat


def test_datamodule_gives_each_rank_its_shard() -> None:
    seen = []
    for rank in (0, 1):
        dm = _Toy(batch_size=10)
        dm.trainer = _trainer(rank, 2)
        seen.append(torch.cat([y for _, y in dm.val_dataloader()]))
        assert len(dm.train_dataloader()) == 5
    assert len(seen[0]) == len(seen[1]) == 5


def test_training_batches_are_random_and_evaluation_batches_deterministic(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    dm = CIFAR10(data_dir=tmp_path, batch_size=32, augment="standard", aug={"mixup": 0.2})
    dm.trainer = _trainer(0, 1)
    train = dm.train_dataloader()
    (xa, ya), (xb, yb) = next(iter(train)), next(iter(train))
    assert ya.shape == (32, 10) and torch.allclose(ya.sum(1), torch.ones(32))
    # augmented: not what the deterministic transform makes of the same images
    plain = dm.eval_transform()(dm.splits["train"].x[train._indices()[:32]])
    assert not torch.allclose(xa, plain, atol=1e-3)
    # reproducible: an epoch's batches depend on (seed, epoch, batch) only, so a resumed run sees the same
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    state = torch.random.get_rng_state()
    next(iter(train))
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    dm.trainer = _trainer(0, 1, epoch=1)
    assert not torch.allclose(next(iter(dm.train_dataloader()))[0], xa)
    (va, la), (vb, lb) = next(iter(dm.val_dataloader())), next(iter(dm.val_dataloader()))
    assert torch.equal(va, vb) and torch.equal(la, lb) and la.ndim == 1
    mean = torch.tensor(dm.mean).view(1, 3, 1, 1)
    std = torch.tensor(dm.std).view(1, 3, 1, 1)
    assert torch.allclose(va, (dm.splits["val"].x.float() / 255 - mean) / std, atol=1e-6)


@pytest.mark.slow
def test_cifar10_and_imagefolder_train_end_to_end_with_the_augmented_grid_in_tensorboard(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    write_cifar10(tmp_path / "data")
    write_imagefolder(tmp_path / "data" / "folders")
    # fast_dev_run would swap the logger for a dummy: a one-epoch run of two batches instead
    common = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
              "+trainer.limit_test_batches=1", "trainer.accelerator=cpu", "callbacks.progress_bar.refresh_rate=0"]
    runs = {
        "cifar": ["data=cifar10", f"data.data_dir={tmp_path / 'data'}", "data.augment=strong", "data.aug.cutmix=1.0",
                  "data.balanced_sampler=true", "loss.weight=balanced", "data.batch_size=16"],
        "folder": ["data=imagefolder", f"data.data_dir={tmp_path / 'data' / 'folders'}", "data.image_size=32",
                   "data.num_workers=0", "data.batch_size=4"],
    }
    for name, args in runs.items():
        run_dir = tmp_path / name
        r = run_cli("train.py", *args, *common, f"hydra.run.dir={run_dir}", timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        events = list(run_dir.rglob("events.out.tfevents*"))
        assert events, f"no TensorBoard events in {run_dir}"
        tags = set()
        for ev in events:
            acc = EventAccumulator(str(ev), size_guidance={"images": 0})
            acc.Reload()
            tags |= set(acc.Tags()["images"])
        assert "train/augmented_batch" in tags


def test_gzip_reader_accepts_torchvision_unzipped_layout(tmp_path: Path) -> None:
    """torchvision extracts the .gz files next to themselves; both forms read the same."""
    written = write_mnist(tmp_path, "MNIST", gz=True)
    raw = tmp_path / "MNIST" / "raw"
    for gz_path in raw.glob("*.gz"):
        with gzip.open(gz_path) as f:
            gz_path.with_suffix("").write_bytes(f.read())
        gz_path.unlink()
    dm = MNIST(data_dir=tmp_path)
    dm.setup()
    _assert_round_trip(dm, written)


class _Indexed(InMemoryDataModule):
    """Image i is the constant i (0..n-1), so a batch tells which samples a rank trained on."""

    name, num_classes, input_shape, mean, std = "indexed", 2, (1, 1, 1), (0.0,), (1 / 255,)

    def __init__(self, n: int = 30, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n = n

    def load_splits(self) -> dict[str, Split]:
        x = torch.arange(self.n, dtype=torch.uint8).view(-1, 1, 1, 1)
        y = torch.arange(self.n) % 2
        return {"train": Split(x, y), "val": Split(x[:4], y[:4]), "test": Split(x[:4], y[:4])}


class _Recorder(pl.LightningModule):
    """Writes the sample indices each rank trained on to ``out/rank<r>.txt``."""

    def __init__(self, out: str) -> None:
        super().__init__()
        self.out, self.seen = out, []
        self.layer = torch.nn.Linear(1, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen += x.flatten().round().long().tolist()  # mean 0, std 1/255: x is the index
        return torch.nn.functional.cross_entropy(self.layer(x.flatten(1) / 255), y)

    def on_train_epoch_end(self) -> None:
        Path(self.out, f"rank{self.global_rank}.txt").write_text(" ".join(map(str, self.seen)))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.slow
def test_lightning_ddp_with_two_cpu_processes_trains_each_rank_on_its_own_shard(tmp_path: Path) -> None:
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, use_distributed_sampler=False)
    trainer.fit(_Recorder(str(tmp_path)), datamodule=_Indexed(n=30, batch_size=4))
    shards = [[int(v) for v in (tmp_path / f"rank{r}.txt").read_text().split()] for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 15
    assert set(shards[0]).isdisjoint(shards[1]) and set(shards[0]) | set(shards[1]) == set(range(30))


def test_download_calls_torchvision_with_data_dir_then_reads_what_it_wrote(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    calls = []

    def fake_cifar10(root, download=False, **kwargs):  # what torchvision's download leaves on disk
        calls.append((root, download))
        write_cifar10(root)

    def fake_svhn(root, split="train", download=False, **kwargs):
        calls.append((root, split, download))
        write_svhn(root)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_cifar10)
    monkeypatch.setattr(torchvision.datasets, "SVHN", fake_svhn)
    dm = CIFAR10(data_dir=tmp_path, download=True)
    dm.setup()
    assert calls == [(str(tmp_path), True)] and len(dm.splits["test"]) == 20
    CIFAR10(data_dir=tmp_path, download=True).setup()  # files present: no second download
    assert len(calls) == 1
    SVHN(data_dir=tmp_path / "svhn", download=True).setup()
    assert calls[1:] == [(str(tmp_path / "svhn"), "train", True), (str(tmp_path / "svhn"), "test", True)]
