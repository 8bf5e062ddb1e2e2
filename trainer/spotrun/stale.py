"""Clean up temp folders that a killed writer left behind."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from . import layout

log = logging.getLogger("spotrun")

STALE_AFTER_SECONDS = 3600.0


def is_stale(name: str, mtime: float, now: float, alive: set[int]) -> bool:
    """A temp folder is stale when its writer's pid is dead on this host, or it is old.

    Temp names end in ``-<host>.<pid>-<random>``; a folder from another host (a shared
    volume) is only judged by age.
    """
    if not name.startswith(layout.TMP_PREFIX):
        return False
    if now - mtime > STALE_AFTER_SECONDS:
        return True
    try:
        host, pid_text = name.rsplit("-", 2)[-2].rsplit(".", 1)
        pid = int(pid_text)
    except ValueError:
        return False
    return host == writer_host() and pid not in alive


def writer_host() -> str:
    return os.uname().nodename.replace("-", "_").replace(".", "_")


def writer_token(random_hex: str) -> str:
    return f"{writer_host()}.{os.getpid()}-{random_hex}"


def remove_stale_tmp(directory: Path) -> list[str]:
    """Remove the temp folders of dead writers; returns their names."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    now = time.time()
    alive = {int(p) for p in os.listdir("/proc") if p.isdigit()}
    removed = []
    for entry in entries:
        if entry.is_dir() and is_stale(entry.name, entry.stat().st_mtime, now, alive):
            log.info("spotrun: removing %s left by a writer that died mid-save", entry.path)
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.name)
    return removed
