"""Direct mode: the library itself uploads each committed checkpoint to S3 in the background.

Used when ``SPOTRUN_STORAGE_URI`` is ``s3://...`` and no sidecar does it
(``SPOTRUN_UPLOAD=sidecar`` is set by the operator when its sidecar runs).
"""

from __future__ import annotations

import logging
import threading
import time

from .syncer import Syncer

log = logging.getLogger("spotrun")

RETRY_MIN, RETRY_MAX = 1.0, 30.0


class DirectUploader:
    def __init__(self, syncer: Syncer) -> None:
        self.syncer = syncer
        self._wake = threading.Event()
        self._stopped = False
        self._caught_up = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="spotrun-uploader", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """A new local checkpoint is committed."""
        self._wake.set()

    def _run(self) -> None:
        delay = RETRY_MIN
        while not self._stopped:
            self._wake.wait()
            self._wake.clear()
            try:
                ok = self.syncer.sync_once()
            except Exception as e:  # the thread must live: flush() waits on it
                name = type(e).__name__
                log.warning("spotrun: upload pass failed (%s: %s); trying again", name, e)
                ok = False
            with self._caught_up:
                self._caught_up.notify_all()
            if not ok and not self._stopped:
                time.sleep(delay)  # back off, then try again
                delay = min(delay * 2, RETRY_MAX)
                self._wake.set()
            else:
                delay = RETRY_MIN

    def flush(self, step: int | None, timeout: float) -> bool:
        """Wait until ``step`` is durable in S3 or ``timeout`` passes; True if it made it."""
        if step is None:
            return True
        deadline = time.monotonic() + timeout
        self.notify()
        with self._caught_up:
            while (self.syncer.durable_step or -1) < step:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._caught_up.wait(timeout=min(left, 1.0))
        return True

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
