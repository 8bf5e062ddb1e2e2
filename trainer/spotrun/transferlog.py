"""Progress lines (bytes, MB/s, ETA) for transfers that last more than a few seconds."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("spotrun")

QUIET_SECONDS = 3.0
EVERY_SECONDS = 2.0


def progress_line(what: str, done: int, total: int, seconds: float) -> str:
    rate = done / seconds / 1e6 if seconds > 0 else 0.0
    eta = (total - done) / (rate * 1e6) if rate > 0 else float("inf")
    return (
        f"spotrun: {what}: {done / 2**20:.0f}/{total / 2**20:.0f} MiB, {rate:.0f} MB/s, "
        f"ETA {eta:.0f}s"
    )


class TransferLog:
    """Call it with byte counts as parts complete; it logs at most every few seconds."""

    def __init__(self, what: str, total: int) -> None:
        self.what = what
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self._last = self.started
        self._lock = threading.Lock()

    def __call__(self, nbytes: int) -> None:
        with self._lock:
            self.done += nbytes
            now = time.monotonic()
            if now - self.started >= QUIET_SECONDS and now - self._last >= EVERY_SECONDS:
                self._last = now
                log.info(progress_line(self.what, self.done, self.total, now - self.started))

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started
