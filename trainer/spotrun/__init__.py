"""spotrun: resumable PyTorch training on spot / preemptible capacity.

The library surface: ``Checkpointer`` (restore, step hook, save, close), ``ResumableLoader``
(a data loader whose position inside the epoch is checkpointed), ``KeepBest`` (retention by
metric) and ``device()`` (the device the run should use).
"""

from __future__ import annotations

from .checkpointer import Checkpointer
from .components import CheckpointMismatchError
from .env import device
from .manifest import UnknownFormatError
from .retention import KeepBest
from .sampler import ResumableLoader

__all__ = [
    "Checkpointer",
    "CheckpointMismatchError",
    "KeepBest",
    "ResumableLoader",
    "UnknownFormatError",
    "device",
]
__version__ = "0.1.0"
