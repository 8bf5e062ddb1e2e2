"""SIGTERM / SIGINT handling: the handler only records the signal, nothing more.

The training loop polls ``requested`` at step boundaries and saves there. Any handler that was
installed before is chained (called after recording, unless it is the default action, which
would kill the process before the save) and put back by ``uninstall``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Counts stop signals; ``first_at`` is the monotonic time of the first."""

    def __init__(self) -> None:
        self.count = 0
        self.first_at: float | None = None
        self.signum: int | None = None
        self.changed = threading.Event()
        self._previous: dict[int, Handler] = {}

    @property
    def requested(self) -> bool:
        return self.count > 0

    def record(self, signum: int) -> None:
        if self.first_at is None:
            self.first_at = time.monotonic()
            self.signum = signum
        self.count += 1
        self.changed.set()

    def reset(self) -> None:
        """The stop was handled (Ctrl-C raised at a step boundary): wait for a new one."""
        self.count = 0
        self.first_at = None
        self.signum = None
        self.changed.set()

    def install(self) -> bool:
        """Install on the main thread; elsewhere (signals cannot be caught) return False."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return True

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.record(signum)
        previous = self._previous.get(signum)
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, frame)


def save_deadline(grace_seconds: float, estimated_save_seconds: float) -> float:
    """Seconds after the first signal by which the save must start to finish in the grace.

    Leaves room for two saves' worth of time plus 2 s of exit, but never less than a third of
    the grace period for the step in progress to finish.
    """
    budget = grace_seconds - 2.0 * estimated_save_seconds - 2.0
    return max(budget, grace_seconds / 3.0)
