"""Training with PyTorch Lightning: the tasks (LightningModules), optimizers and schedules, losses, fine-tuning,
and the callbacks (one concern a file, in ``zoo.training.callbacks``)."""
