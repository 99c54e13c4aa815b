"""Datamodules: everything about data, nothing about models.

Normalisation is written once, in :mod:`zoo.datamodules.augment` (``normalize``, ``normalize_uint8``,
``denormalize``); whitening in :mod:`zoo.datamodules.whiten` (``apply_whitening``, and ``preprocess`` for an
image fed as a checkpoint's data was).
"""

from zoo.datamodules.augment import denormalize, normalize, normalize_uint8
from zoo.datamodules.base import DataModule, InMemoryDataModule, Split, TensorBatches
from zoo.datamodules.whiten import apply_whitening, preprocess

__all__ = ["DataModule", "InMemoryDataModule", "Split", "TensorBatches", "apply_whitening", "denormalize",
           "normalize", "normalize_uint8", "preprocess"]
