"""The sidecar's restore at pod start, and what it does when the storage cannot be read.

First attempt (no expected step): retry transient failures up to ``timeout``, then let the
trainer start anyway (it trains on local checkpoints; uploads resume once S3 works).

A later attempt (the job's status says step N was saved, ``expected``): never start from
scratch because the storage is down, hanging or refusing: wait with capped backoff, with
``state: waiting-for-storage`` and the cause at /status, one short log line per retry. A fresh
start happens only when the storage answers and holds no valid checkpoint; an answer older
than N is restored, loudly.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

from .probes import Health
from .s3errors import PermanentStoreError
from .signals import StopRequest
from .store import StoreError
from .syncer import Syncer

log = logging.getLogger("spotrun")

FIRST_DELAY = 0.5

Decision = Literal["retry", "give-up"]


def after_failure(
    expected: int | None, permanent: bool, waited: float, delay: float, timeout: float
) -> Decision:
    """What to do when a restore attempt could not read the storage (pure)."""
    if expected is not None:
        return "retry"  # a saved step is never given up for a fresh start
    if permanent or waited + delay > timeout:
        return "give-up"
    return "retry"


def next_delay(delay: float, cap: float) -> float:
    """Exponential backoff, capped at ``cap`` seconds."""
    return min(delay * 2, max(cap, FIRST_DELAY))


def outcome_line(expected: int | None, step: int | None, uri: str) -> tuple[int, str] | None:
    """(log level, message) when a restore's result deserves a warning, else None (pure)."""
    if expected is None:
        return None
    if step is None:
        return logging.ERROR, (
            f"spotrun sidecar: the job's status says step {expected} was saved, but {uri} "
            "answers and holds no valid checkpoint: the trainer starts from scratch"
        )
    if step < expected:
        return logging.ERROR, (
            f"spotrun sidecar: the job's status says step {expected} was saved, but the newest "
            f"valid checkpoint in {uri} is step {step}: restoring that one; "
            f"{expected - step} step(s) will be trained again"
        )
    return None


def restore_phase(
    syncer: Syncer,
    health: Health,
    stop: StopRequest,
    expected: int | None,
    timeout: float,
    max_backoff: float,
) -> bool:
    """Restore the newest valid checkpoint; False when stopped (SIGTERM) before it finished."""
    started = time.monotonic()
    delay = FIRST_DELAY
    cause: StoreError | None = None
    while not stop.requested:
        try:
            step = syncer.restore_newest()
        except StoreError as e:
            cause = e
            waited = time.monotonic() - started
            decision = after_failure(
                expected, isinstance(e, PermanentStoreError), waited, delay, timeout
            )
            if decision == "give-up":
                break
            health.state, health.problem = "waiting-for-storage", str(e)
            if expected is not None:
                log.warning(
                    "spotrun sidecar: step %s was saved but the storage cannot be read (%s); "
                    "the trainer waits; retry in %.1fs",
                    expected,
                    e,
                    delay,
                )
            else:
                log.info("spotrun sidecar: restore failed (%s); retry in %.1fs", e, delay)
            stop.changed.wait(delay)
            delay = next_delay(delay, max_backoff)
            continue
        said = outcome_line(expected, step, syncer.remote.uri)
        if said is not None:
            log.log(*said)
        log.info("spotrun sidecar: ready; newest local checkpoint: step %s", step)
        return True
    if stop.requested:
        return False
    log.error(
        "spotrun sidecar: starting the trainer without restoring from %s (%s); it trains on "
        "local checkpoints and uploads resume once S3 works",
        syncer.remote.uri,
        cause,
    )
    return True
