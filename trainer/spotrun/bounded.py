"""Run blocking storage calls with a wall-clock deadline the caller keeps to the second.

botocore's timeouts are per socket operation: an endpoint that answers one byte a second never
trips them. Here the work runs on daemon threads and the caller stops waiting at the deadline;
a call still stuck then is abandoned (a daemon thread never holds the process at exit).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from .store import StoreError

T = TypeVar("T")
Item = TypeVar("Item")


class DeadlineExceeded(StoreError):
    """The storage did not finish within the time it was given (hanging or too slow)."""


Deadline = Callable[[], float]  # the time.monotonic() to give up at; asked again as it runs


def run_all(
    fn: Callable[[Item], None], items: Sequence[Item], workers: int, deadline: Deadline, what: str
) -> None:
    """``fn(item)`` for every item on up to ``workers`` daemon threads, all before
    ``deadline()`` (re-read every quarter second, so a deadline moved closer, e.g. by SIGTERM,
    applies to a call already waiting). The first exception is re-raised (the remaining items
    are skipped); at the deadline DeadlineExceeded names ``what``."""
    if not items:
        return
    started = time.monotonic()
    if deadline() <= started:
        raise DeadlineExceeded(f"{what}: no time left before the deadline")
    todo: queue.SimpleQueue[Item] = queue.SimpleQueue()
    for item in items:
        todo.put(item)
    errors: list[BaseException] = []
    left = [len(items)]
    lock, finished, cancelled = threading.Lock(), threading.Event(), threading.Event()

    def worker() -> None:
        while not cancelled.is_set():
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                fn(item)
            except BaseException as e:  # noqa: BLE001 (handed to the waiting caller)
                errors.append(e)
                cancelled.set()
                finished.set()
                return
            with lock:
                left[0] -= 1
                if left[0] == 0:
                    finished.set()

    for index in range(max(1, min(workers, len(items)))):
        threading.Thread(target=worker, name=f"spotrun-io-{index}", daemon=True).start()
    while not finished.wait(min(0.25, max(deadline() - time.monotonic(), 0.0))):
        if time.monotonic() >= deadline():
            cancelled.set()
            waited = time.monotonic() - started
            raise DeadlineExceeded(f"{what} did not finish within {waited:.0f}s")
    if errors:
        raise errors[0]


def call(fn: Callable[[], T], deadline: Deadline, what: str) -> T:
    """``fn()`` on a daemon thread; its result, its exception, or DeadlineExceeded."""
    result: list[T] = []
    run_all(lambda _: result.append(fn()), [None], 1, deadline, what)
    return result[0]


def within(seconds: float, cap: Callable[[], float | None] | None = None) -> Deadline:
    """A deadline ``seconds`` from now, or ``cap()`` when that is sooner (None: no cap)."""
    own = time.monotonic() + seconds

    def deadline() -> float:
        limit = cap() if cap is not None else None
        return own if limit is None else min(own, limit)

    return deadline
