"""spotrun: resumable PyTorch training on spot / preemptible capacity.

The library surface: ``Checkpointer`` (restore, step hook, save, close), ``ResumableLoader``
(a data loader whose position inside the epoch is checkpointed), ``KeepBest`` (retention by
metric) and ``device()`` (the device the run should use). They load on first use, so that
``spotrun exec`` and ``spotrun sidecar`` start without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .checkpointer import Checkpointer
    from .components import CheckpointMismatchError
    from .env import device
    from .manifest import UnknownFormatError
    from .retention import KeepBest
    from .sampler import ResumableLoader

_WHERE = {
    "Checkpointer": ".checkpointer",
    "CheckpointMismatchError": ".components",
    "device": ".env",
    "UnknownFormatError": ".manifest",
    "KeepBest": ".retention",
    "ResumableLoader": ".sampler",
}

__all__ = [
    "CheckpointMismatchError",
    "Checkpointer",
    "KeepBest",
    "ResumableLoader",
    "UnknownFormatError",
    "device",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module 'spotrun' has no attribute {name!r}")
