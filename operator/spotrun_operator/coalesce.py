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


class Fresh(Generic[T]):
    """``get()`` returns the result of a ``read()`` that started after the call: callers that
    wait at the same time share one. The result is shared: callers must not change it."""

    def __init__(self, read: Callable[[], T]) -> None:
        self._read = read
        self._cond = threading.Condition()
        self._started = 0  # reads started so far
        self._done = 0  # the newest read that ended (its number)
        self._running = False
        self._value: T | None = None
        self._error: BaseException | None = None

    def get(self) -> T:
        with self._cond:
            need = self._started + 1  # the first read that starts from now on
            while self._done < need and self._running:
                self._cond.wait()
            if self._done >= need:  # one started after this call has ended: share it
                return self._result()
            self._running = True
            self._started += 1
            number = self._started
        value: T | None = None
        error: BaseException | None = None
        try:
            value = self._read()
        except BaseException as err:  # handed to every caller that shares this read
            error = err
        with self._cond:
            self._running, self._done = False, number
            self._value, self._error = value, error
            self._cond.notify_all()
            return self._result()

    def _result(self) -> T:
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set together with _done
