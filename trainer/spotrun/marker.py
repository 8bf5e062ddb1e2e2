"""``<root>/.spotrun-exit.json``: the trainer says it has exited and which step it left durable.

The sidecar reads it to know when the final checkpoint is complete (so it can upload it and
stop) rather than guessing from a quiet directory.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

NAME = ".spotrun-exit.json"


def write(root: Path, step: int | None, reason: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{NAME}.tmp"
    tmp.write_text(json.dumps({"step": step, "reason": reason, "time": time.time()}))
    os.replace(tmp, root / NAME)


def read(root: Path) -> dict[str, Any] | None:
    try:
        value = json.loads((root / NAME).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def clear(root: Path) -> None:
    (root / NAME).unlink(missing_ok=True)
