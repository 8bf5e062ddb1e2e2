"""One read shared by the threads that want it at the same time, never an older one.

The storage-overlap check lists every job before a job's first pod. When many jobs start
together (1000 created at once), each pass listing all of them makes the work grow with the
square of the job count, and every thread holds a parsed list of its own at the same time.
``Fresh`` lets the passes waiting at one moment share a list, without ever handing one a list
read before it asked: a caller that arrives while a read is under way waits for the *next*
read (which starts once that one ends), so what it gets is as fresh as a read of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Read(Generic[T]):
    """One read and what it brought, held only by the callers that share it."""

    def __init__(self) -> None:
        self.done = False
        self.value: T | None = None
        self.error: BaseException | None = None

    def result(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # set together with done


class Fresh(Generic[T]):
    """``get()`` returns the result of a ``read()`` that started after the call: callers that
    wait at the same time share one. The result is shared: callers must not change it.

    Nothing is kept once the callers have their result: a 1000-job list is held by the passes
    that use it, not by this object until the next read (which may be hours away)."""

    def __init__(self, read: Callable[[], T]) -> None:
        self._read = read
        self._cond = threading.Condition()
        self._current: _Read[T] | None = None  # the read under way
        self._next: _Read[T] | None = None  # the one callers that came during it will share

    def get(self) -> T:
        with self._cond:
            if self._current is None:  # start a read (the one waiting callers need, if any)
                box = self._current = self._next or _Read()
                self._next = None
            else:
                box = self._next = self._next or _Read()
                while not box.done and self._current is not None:
                    self._cond.wait()
                if box.done:  # another caller ran the read this one waited for
                    return box.result()
                self._current, self._next = box, None  # the first to wake starts it
        try:
            box.value = self._read()
        except BaseException as err:  # handed to every caller that shares this read
            box.error = err
        with self._cond:
            box.done, self._current = True, None
            self._cond.notify_all()
        return box.result()
