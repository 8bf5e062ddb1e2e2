"""``spotrun exec -- CMD...``: run CMD as a child and pass SIGTERM/SIGINT on to it.

A container's PID 1 gets the kubelet's SIGTERM; a shell or launcher there often swallows it,
so the trainer never saves. This tiny entrypoint starts CMD in its own process group, forwards
SIGTERM, SIGINT and SIGHUP to that whole group, reaps it, and exits with its exit code
(128 + N when a signal N ended it), so the pod reports what the trainer did.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from types import FrameType

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def exit_code(returncode: int) -> int:
    """A shell-style exit code: the child's code, or 128 + N when signal N ended it."""
    return 128 - returncode if returncode < 0 else returncode


def run(command: list[str]) -> int:
    """Run ``command`` to completion, forwarding signals; return its shell-style exit code.

    The handlers are in place before the child starts: a SIGTERM in between is held and
    sent once the child exists (it used to end this process by default, leaving the child,
    in a session of its own, running without it)."""
    child: subprocess.Popen[bytes] | None = None
    held: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        del frame
        if child is None:
            held.append(signum)
            return
        try:
            os.killpg(child.pid, signum)
        except ProcessLookupError:
            pass  # already gone; wait() below reaps it

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        try:
            child = subprocess.Popen(command, start_new_session=True)
        except OSError as e:
            print(f"spotrun exec: cannot start {command[0]!r}: {e}", file=sys.stderr)
            return 127
        for signum in held:
            forward(signum, None)
        return exit_code(child.wait())
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
