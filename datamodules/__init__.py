"""Datamodules: everything about data, nothing about models.

Normalisation is written once, in :mod:`datamodules.augment` (``normalize``, ``normalize_uint8``,
``denormalize``); whitening in :mod:`datamodules.whiten` (``apply_whitening``, and ``preprocess`` for an
image fed as a checkpoint's data was).
"""

from datamodules.augment import denormalize, normalize, normalize_uint8
from datamodules.base import DataModule, InMemoryDataModule, Split, TensorBatches
from datamodules.whiten import apply_whitening, preprocess

__all__ = ["DataModule", "InMemoryDataModule", "Split", "TensorBatches", "apply_whitening", "denormalize",
           "normalize", "normalize_uint8", "preprocess"]
