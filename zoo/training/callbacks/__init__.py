"""Lightning callbacks, one concern a file: ``ema``, ``diagnostics`` (with ``figures`` and the ``tensorboard``
reader), ``lr_monitor``, ``nan_guard``, ``progress`` and ``resume_state``."""
