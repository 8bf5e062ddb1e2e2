"""Two small notes the trainer and the sidecar leave each other in the shared checkpoint folder.

``.spotrun-deadline.json`` (the trainer writes it at the first SIGTERM): the wall-clock end of
the pod's grace period, ``{"deadline": t, "written": t0}``. Both containers know the grace
period (``SPOTRUN_GRACE_SECONDS``) but not when it started for the other: a native sidecar
gets its SIGTERM only once the trainer has exited, late in the notice when the trainer used
it. The sidecar's deadline is the earlier of its own and this one, so both end the same
grace period.

``.spotrun-durable.json`` (the sidecar writes it after each upload): the newest step durable
in S3 and the wall-clock time it became so, ``{"step": n, "time": t}``. The trainer knows when
it committed that step, so the difference is the commit-to-durable time it plans its SIGTERM
save with (``notice``).

Both containers of a pod share one node and one clock. Whatever a note holds came through a
shared folder: a note that is not a small regular file holding a JSON object with the right
types and finite numbers is ignored (read as None), never trusted.
"""

from __future__ import annotations

import json
import logging
import math
import os
import stat
import time
from pathlib import Path
from typing import Any

DEADLINE = ".spotrun-deadline.json"
DURABLE = ".spotrun-durable.json"
MAX_BYTES = 4096

log = logging.getLogger("spotrun")


def write_deadline(root: Path, deadline: float, written: float) -> None:
    _write(root / DEADLINE, {"deadline": deadline, "written": written})


def read_deadline(root: Path, not_before: float) -> float | None:
    """The deadline of a note written at or after ``not_before`` (an older one is another
    run's), else None."""
    note = _read(root / DEADLINE)
    deadline, written = _number(note, "deadline"), _number(note, "written")
    if deadline is None or written is None or written < not_before:
        return None
    return deadline


def shared_deadline(root: Path, signalled: float, grace_seconds: float) -> float:
    """The trainer's deadline as a ``time.monotonic()`` value, for a process that got its own
    SIGTERM at ``signalled`` (monotonic); inf when no note is about this grace period (one
    written more than a grace period before that signal is another run's)."""
    offset = time.time() - time.monotonic()
    found = read_deadline(root, not_before=signalled + offset - grace_seconds)
    return math.inf if found is None else found - offset


def write_durable(root: Path, step: int, at: float) -> None:
    _write(root / DURABLE, {"step": step, "time": at})


def note_durable(root: Path, step: int | None, at: float | None, noted: int | None) -> int | None:
    """Leave the trainer the newest durable step unless it is the one ``noted`` already;
    returns the step the note now names (a write that fails is logged, tried again later)."""
    if step is None or at is None or step == noted:
        return noted
    try:
        write_durable(root, step, at)
    except OSError as e:
        log.warning("spotrun sidecar: cannot leave the trainer the durable step: %s", e)
        return noted
    return step


def read_durable(root: Path) -> tuple[int, float] | None:
    """(step, wall time it became durable), or None when there is no usable note."""
    note = _read(root / DURABLE)
    step, at = (note or {}).get("step"), _number(note, "time")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0 or at is None:
        return None
    return step, at


def _number(note: dict[str, Any] | None, key: str) -> float | None:
    value = (note or {}).get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _write(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a directory, FIFO, device: not a note
            os.close(fd)
            return None
        with os.fdopen(fd, "rb") as f:
            value = json.loads(f.read(MAX_BYTES + 1))
    except (OSError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
