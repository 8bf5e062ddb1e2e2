"""The trainer starts beside its sidecar: ``Checkpointer.restore()`` waits for the sidecar's
restore before it reads the checkpoint volume.

The operator's pods let the trainer start as soon as the sidecar runs (an S3 job's sidecar has
no startupProbe), so the trainer's Python and torch imports overlap the sidecar's start and its
download. The sidecar writes ``<root>/.spotrun-ready`` once the newest valid checkpoint is in
the volume (or it decided to start without one); until then the volume may hold half a
download. Under a sidecar (``SPOTRUN_UPLOAD=sidecar``, set by the operator) ``wait`` blocks
until that file exists, at most ``SPOTRUN_READY_TIMEOUT`` seconds (default 1800), then raises
``SidecarNotReadyError`` naming what it waited for and the fix. Without a sidecar (a laptop,
direct mode, a claim) it returns at once: nothing changes there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from .podenv import PodEnv

log = logging.getLogger("spotrun")

READY = ".spotrun-ready"
DEFAULT_TIMEOUT = 1800.0
POLL_SECONDS = 0.02


class SidecarNotReadyError(RuntimeError):
    """The sidecar did not finish its restore within the timeout."""


def mark(root: Path) -> None:
    """The sidecar's side: the volume holds what it restored."""
    (root / READY).touch()


def under_sidecar(env: PodEnv) -> bool:
    return env.upload == "sidecar"


def wait(
    root: Path,
    env: PodEnv | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    stopped: Callable[[], bool] = lambda: False,
) -> float | None:
    """Block until the sidecar's restore is done (see the module docstring); returns the
    seconds waited (0 without a sidecar), or None once ``stopped()`` says a stop signal came
    first (the pod is going away: there is nothing to restore into, nor to save)."""
    env = PodEnv.from_env() if env is None else env
    if not under_sidecar(env):
        return 0.0
    timeout = DEFAULT_TIMEOUT if env.ready_timeout is None else env.ready_timeout
    started = clock()
    said = False
    while not (root / READY).exists():
        if stopped():
            return None
        waited = clock() - started
        if waited >= timeout:
            raise SidecarNotReadyError(
                f"spotrun: waited {waited:.0f}s for the sidecar (spotrun-sidecar) to restore "
                f"the newest checkpoint into {root}: it writes {root / READY} when done, and "
                "has not. Check its log (kubectl logs <pod> -c spotrun-sidecar) and its "
                "/status (a storage it cannot read, an earlier attempt still saving); set "
                "SPOTRUN_READY_TIMEOUT (seconds) to wait longer"
            )
        if not said and waited >= 1.0:
            log.info("spotrun: waiting for the sidecar to restore the newest checkpoint")
            said = True
        sleep(POLL_SECONDS)
    return clock() - started
