"""A child process's output lines, collected by a thread as they come, for tests that wait for
what a trainer prints (a line, a count of lines) or for its output to end."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable


class OutputLines:
    """Reads ``stream`` (a text pipe) to its end; ``lines`` holds what came, stripped."""

    def __init__(self, stream: Iterable[str]) -> None:
        self.lines: list[str] = []
        self.ended = False  # the stream closed: the process exited (or closed its output)
        self._new = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Iterable[str]) -> None:
        for line in stream:
            with self._new:
                self.lines.append(line.strip())
                self._new.notify_all()
        with self._new:
            self.ended = True
            self._new.notify_all()

    def wait_for(self, found: Callable[[list[str]], bool], timeout: float) -> bool:
        """Wait until ``found(lines)`` holds or the output ends; True when it holds. Raises
        TimeoutError after ``timeout`` seconds of neither."""
        with self._new:
            if not self._new.wait_for(lambda: found(self.lines) or self.ended, timeout=timeout):
                raise TimeoutError(f"not found in {timeout}s; last lines: {self.lines[-20:]}")
            return found(self.lines)
