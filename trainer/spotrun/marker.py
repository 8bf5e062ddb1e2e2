"""``<root>/.spotrun-exit.json``: the trainer says it has exited and which step it left durable.

The sidecar reads it to know when the final checkpoint is complete (so it can upload it and
stop) rather than guessing from a quiet directory.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

NAME = ".spotrun-exit.json"


def write(root: Path, step: int | None, reason: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{NAME}.tmp"
    tmp.write_text(json.dumps({"step": step, "reason": reason, "time": time.time()}))
    os.replace(tmp, root / NAME)


MAX_BYTES = 64 * 1024


def read(root: Path) -> dict[str, Any] | None:
    """The exit note, or None when there is none or it is not a small JSON object (a link, a
    FIFO, a huge or broken file in the shared folder never hangs or crashes the reader)."""
    try:
        fd = os.open(root / NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            value = json.loads(f.read(MAX_BYTES + 1))
    except (OSError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def clear(root: Path) -> None:
    (root / NAME).unlink(missing_ok=True)
