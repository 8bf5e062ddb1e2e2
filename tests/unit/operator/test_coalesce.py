"""Passes that want the job list at the same time share one list, never one older than their
own request (the storage-overlap check must see every job created before it asked)."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable

import pytest

from spotrun_operator.coalesce import Fresh

pytestmark = pytest.mark.unit


class _Lister:
    """Counts reads; the first one waits for ``gate``."""

    def __init__(self) -> None:
        self.reads = 0
        self.gate = threading.Event()
        self.lock = threading.Lock()

    def __call__(self) -> int:
        with self.lock:
            self.reads += 1
            number = self.reads
        if number == 1:
            assert self.gate.wait(30)
        return number


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def test_callers_waiting_together_share_the_next_read_not_the_one_under_way() -> None:
    lister = _Lister()
    fresh = Fresh(lister)
    got: dict[str, int] = {}

    def call(name: str) -> None:
        got[name] = fresh.get()

    first = threading.Thread(target=call, args=("first",))
    first.start()
    _until(lambda: lister.reads == 1, "the first read never started")
    late = [threading.Thread(target=call, args=(f"late-{i}",)) for i in range(3)]
    for t in late:
        t.start()
    _until(lambda: len(fresh._cond._waiters) == 3, "the late callers never waited")  # type: ignore[attr-defined]
    lister.gate.set()
    for t in [first, *late]:
        t.join(30)
    assert got == {"first": 1, "late-0": 2, "late-1": 2, "late-2": 2}
    assert lister.reads == 2  # 4 callers, 2 lists
    assert fresh.get() == 3  # alone: a read of its own


def test_a_failed_read_fails_its_callers_and_the_next_call_reads_again() -> None:
    calls = []

    def read() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("API server unreachable")
        return "jobs"

    fresh = Fresh(read)
    with pytest.raises(ConnectionError, match="unreachable"):
        fresh.get()
    assert fresh.get() == "jobs"


class _Jobs:
    """Stands for a parsed list of every job (large at 1000 jobs)."""


def test_the_list_is_not_kept_once_every_caller_has_it() -> None:
    """The overlap check lists all jobs only before a job's first pod: at steady state no
    list is read for hours, and the last one must not stay in memory all that time."""
    fresh = Fresh(_Jobs)
    held = weakref.ref(fresh.get())
    gc.collect()
    assert held() is None
