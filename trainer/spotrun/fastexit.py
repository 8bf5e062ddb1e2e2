"""After the preemption save the platform is about to kill the process: skip the teardown.

``Checkpointer`` exits with ``sys.exit(0)`` once the SIGTERM save is durable, so the script's
``finally`` blocks and the ``atexit`` handlers registered after spotrun's import still run. What
follows them, the interpreter's own teardown (clearing every module, a last garbage collection
with torch loaded), takes seconds of CPU on a busy node, and a trainer that used its notice
(``notice.py``) has only a few seconds left: measured under load, it ran into the grace end's
SIGKILL, which also killed the sidecar before it could report the final save. So once armed,
the last ``atexit`` handler flushes the logs and standard streams and ends the process with
``os._exit(0)``; an exception that escaped to the top disarms it (its exit status stays).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from types import TracebackType

_armed = False


def arm() -> None:
    """The preemption save is durable and ``sys.exit(0)`` follows: end without a teardown."""
    global _armed
    _armed = True


def _disarm_on_uncaught(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None, /
) -> None:
    global _armed
    _armed = False
    _previous_hook(kind, value, tb)


def _exit_now() -> None:
    if not _armed:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or a broken pipe: nothing more to say there
            pass
    os._exit(0)


_previous_hook = sys.excepthook
sys.excepthook = _disarm_on_uncaught
atexit.register(_exit_now)  # registered at import: runs after the handlers registered later
