"""An optional JSON-lines progress log (``SPOTRUN_PROGRESS_FILE``) for tools that watch a run.

``spotrun chaos`` reads it to tell the steps lost per interruption and the time to resume.
One small unbuffered append per event; nothing is written when the variable is unset.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any


class ProgressLog:
    def __init__(self, path: str | None) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if path else None

    def event(self, kind: str, step: int, **fields: Any) -> None:
        if self._fd is None:
            return
        record = {"event": kind, "step": step, "t": time.time(), "pid": os.getpid(), **fields}
        os.write(self._fd, (json.dumps(record) + "\n").encode())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read(path: str) -> list[dict[str, Any]]:
    """Every complete line of a progress log (a line cut by SIGKILL is dropped)."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            out.append(record)
    return out
