"""``spotrun exec``: the child's exit code comes back; SIGTERM reaches a child behind a shell."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from spotrun import execwrap

pytestmark = pytest.mark.unit


def test_exit_codes_are_passed_through():
    assert execwrap.run(["sh", "-c", "exit 3"]) == 3
    assert execwrap.run(["sh", "-c", "kill -9 $$"]) == 137
    assert execwrap.run(["/nonexistent/command"]) == 127


def test_sigterm_is_forwarded_to_the_whole_child_group(tmp_path):
    ready, got = tmp_path / "ready", tmp_path / "got"
    # The trap sits in a grandchild behind a shell that would not forward the signal itself.
    inner = f"trap 'echo term > {got}; exit 7' TERM; touch {ready}; while :; do sleep 0.1; done"
    code = f"from spotrun import execwrap; raise SystemExit(execwrap.run(['sh','-c',{inner!r}]))"
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 7
    assert got.read_text().strip() == "term"


def test_a_signal_before_the_child_exists_is_sent_to_it_once_it_does(monkeypatch):
    """SIGTERM between the handlers' install and the child's start is held, not lost (the
    test's own handler takes a SIGTERM that run() did not: then the child runs on, exit 0)."""
    real_popen = subprocess.Popen

    def late_popen(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while there is no child yet
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(execwrap.subprocess, "Popen", late_popen)
    before = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        # 7: its trap took the SIGTERM; 143: it came before the shell set the trap
        code = execwrap.run(["sh", "-c", "trap 'exit 7' TERM; sleep 2 & wait; exit 0"])
    finally:
        signal.signal(signal.SIGTERM, before)
    assert code in (7, 143)
