"""spotrun: resumable PyTorch training on spot / preemptible capacity.

The library surface: ``Checkpointer`` (restore, step hook, save, close), ``ResumableLoader``
(a data loader whose position inside the epoch is checkpointed), ``KeepBest`` (retention by
metric) and ``device()`` (the device the run should use). They load on first use, so that
``spotrun exec`` and ``spotrun sidecar`` start without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .extras import extra_of
from .version import __version__

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
    "__version__",
    "device",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        try:
            module = importlib.import_module(_WHERE[name], __name__)
        except ModuleNotFoundError as missing:
            if extra_of(missing) != "torch":  # the library's extra, not the sidecar's
                raise
            raise ModuleNotFoundError(
                f"spotrun.{name} needs {missing.name}, which is not installed: install the "
                "library with `pip install 'spotrun[torch]'` (an image whose torch is already "
                "there, e.g. a CUDA build, keeps it)",
                name=missing.name,
            ) from missing
        return getattr(module, name)
    raise AttributeError(f"module 'spotrun' has no attribute {name!r}")
