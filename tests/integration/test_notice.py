"""SIGTERM's notice used, with real processes and real signals: a trainer told its grace period
and opted in (``SPOTRUN_SAVE_AT_ONCE=0``) keeps training after the signal, more steps than one
that saves at once (the default), its save lands before the grace period ends, and the run resumed
from that save ends bit for bit where an uninterrupted run does (``chaos_compare``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spotrun import layout, reader
from spotrun.chaos_compare import compare
from spotrun.localstore import LocalStore
from tests.integration.outputlines import OutputLines

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).with_name("notice_trainer.py")
STEPS = 300
GRACE = 8.0
WAIT = 300.0  # shared machine: generous
SIGNALLED = re.compile(r"signal at step (\d+)")


class Run:
    """notice_trainer.py as a process, its output (stdout and stderr) collected as it comes."""

    def __init__(self, directory: Path, **env: str) -> None:
        full = {k: v for k, v in os.environ.items() if not k.startswith("SPOTRUN_")}
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(directory), "--steps", str(STEPS)],
            env={**full, **env}, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        assert self.proc.stdout is not None
        self.output = OutputLines(self.proc.stdout)
        self.lines = self.output.lines

    def wait_line(self, text: str) -> None:
        if not self.output.wait_for(lambda lines: text in lines, timeout=WAIT):
            raise AssertionError(f"exited ({self.proc.wait()}) first: {self.lines[-20:]}")

    def finish(self) -> None:
        code = self.proc.wait(timeout=WAIT)
        self.output.wait_for(lambda _: False, timeout=WAIT)  # to the output's end
        assert code == 0, self.lines[-30:]

    def signal_step(self) -> int:
        found = [int(m[1]) for m in map(SIGNALLED.search, self.lines) if m]
        assert found, self.lines[-30:]
        return found[0]


def preempted(directory: Path, **env: str) -> tuple[Run, int, int, float]:
    """Train until step 30 (six saves measured), SIGTERM with a grace of GRACE seconds.
    Returns the run, the step the signal came at, the step saved, and how many seconds after
    the signal that checkpoint's manifest (written last) was written."""
    run = Run(directory, SPOTRUN_GRACE_SECONDS=format(GRACE, "g"), **env)
    run.wait_line("step 30")
    sent = time.time()
    run.proc.send_signal(signal.SIGTERM)
    run.finish()
    newest = reader.newest_valid(LocalStore(directory))
    assert newest is not None
    manifest = directory / layout.CHECKPOINTS / newest.name / layout.MANIFEST
    return run, run.signal_step(), newest.step, manifest.stat().st_mtime - sent


def final_state(directory: Path) -> dict[str, object]:
    newest = reader.newest_valid(LocalStore(directory))
    assert newest is not None and newest.step == STEPS
    return reader.decode_state(newest)


def test_the_notice_is_trained_through_and_the_resumed_run_is_bit_identical(
    tmp_path: Path,
) -> None:
    at_once, at_once_signal, at_once_saved, _ = preempted(tmp_path / "at-once")  # default
    assert at_once_saved - at_once_signal <= 1  # the next step boundary saves
    assert any("saving at the next step boundary" in line for line in at_once.lines)

    run, signalled, saved, landed = preempted(tmp_path / "notice", SPOTRUN_SAVE_AT_ONCE="0")
    print(
        f"after SIGTERM: {saved - signalled} steps with the notice used, "
        f"{at_once_saved - at_once_signal} saving at once; the save landed {landed:.1f}s "
        f"into the {GRACE:g}s grace period"
    )
    assert saved - signalled > at_once_saved - at_once_signal
    assert landed < GRACE  # durable before the grace period ends
    assert any(re.search(r"SIGTERM: deadline in [\d.]+ s, save\+upload measured [\d.]+ s: "
                         r"training on until [\d.]+ s", line) for line in run.lines)
    assert any(f"more steps during the notice; saving step {saved}" in line for line in run.lines)

    Run(tmp_path / "notice").finish()  # resumes at the saved step, trains to STEPS
    Run(tmp_path / "reference").finish()  # never interrupted
    assert compare(final_state(tmp_path / "reference"), final_state(tmp_path / "notice")) == []


STEP_LINE = re.compile(r"step (\d+)$")


def test_a_second_sigterm_ends_training_on_and_saves_at_once(tmp_path: Path) -> None:
    """Opted in with a 600 s grace, the trainer would train on to the end of its 300 steps
    (about 14 s); a second SIGTERM while it trains on ends that: it saves where it stands."""
    run = Run(tmp_path, SPOTRUN_GRACE_SECONDS="600", SPOTRUN_SAVE_AT_ONCE="0")
    run.wait_line("step 30")
    run.proc.send_signal(signal.SIGTERM)
    assert run.output.wait_for(
        lambda lines: any("training on until" in line for line in lines), timeout=WAIT
    ), run.lines[-20:]
    signalled = run.signal_step()
    run.wait_line(f"step {signalled + 5}")  # it trains on after the first signal
    seen = max(int(m[1]) for m in map(STEP_LINE.search, run.lines) if m)
    run.proc.send_signal(signal.SIGTERM)
    run.finish()
    newest = reader.newest_valid(LocalStore(tmp_path))
    assert newest is not None
    assert signalled + 5 <= seen <= newest.step < STEPS  # saved where the second signal found it
    assert newest.step - seen <= 20, (seen, newest.step)  # 1 s of steps: at once, not later
