"""``<root>/.spotrun-alive``: a lock the trainer's ``Checkpointer`` holds while it is open.

The sidecar shares the checkpoint folder but not the trainer's processes. After SIGTERM it
must tell "the trainer is still saving" (wait, up to the grace deadline) from "the trainer is
gone without an exit note" (stop now). A shared ``flock`` on this file says which: the kernel
drops it when the trainer's process ends, however it ends (SIGKILL, OOM kill included), and a
lock on a shared volume is seen from every container of the pod. The trainer writes its exit
note (``marker``) before it lets go, so a free lock and no note mean no note will come.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from pathlib import Path

NAME = ".spotrun-alive"
TRIES = 50  # a reader holds the lock exclusively for microseconds; a holder retries this often


def hold(root: Path) -> int | None:
    """Take the shared lock; returns the descriptor to keep (None where it cannot be taken:
    the sidecar then falls back to waiting for the note up to its grace deadline)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(root / NAME, flags, 0o644)
    except OSError:
        return None
    for _ in range(TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            time.sleep(0.001)
        except OSError:
            break
    os.close(fd)
    return None


def release(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def held(root: Path) -> bool:
    """True while some process holds the trainer's lock, i.e. a Checkpointer is open. A link,
    a FIFO or anything but a plain file at that name counts as no trainer (never hangs)."""
    try:
        fd = os.open(root / NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False  # closing the descriptor below lets go of the lock at once
    finally:
        os.close(fd)
