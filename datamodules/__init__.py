"""Datamodules: everything about data, nothing about models."""

from datamodules.base import InMemoryDataModule, Split, TensorBatches

__all__ = ["InMemoryDataModule", "Split", "TensorBatches"]
