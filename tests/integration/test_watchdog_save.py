"""The trainer's saves at the end of a run, with real processes and real signals: a second
SIGTERM or the grace deadline saves at once from the watchdog when no step boundary comes;
Ctrl-C (SIGINT) saves at the next step and exits 0. Each test restores the checkpoint in a
fresh process and checks it holds the weights of the step the trainer was at."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.outputlines import OutputLines

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).with_name("stuck_trainer.py")
WAIT = 300.0  # shared machine: generous, yet below the 600 s grace of the test needing it


class Trainer:
    """stuck_trainer.py as a process; its stdout lines are collected as they come."""

    def __init__(self, directory: Path, mode: str, grace: str = "30") -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTRUN_")}
        env["SPOTRUN_GRACE_SECONDS"] = grace
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(directory), mode], env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        self.output = OutputLines(self.proc.stdout)
        self.lines = self.output.lines

    def wait_line(self, prefix: str, count: int = 1) -> str:
        """The ``count``-th stdout line starting with ``prefix``, once printed."""
        def found(lines: list[str]) -> list[str]:
            return [line for line in lines if line.startswith(prefix)]
        if not self.output.wait_for(lambda lines: len(found(lines)) >= count, timeout=WAIT):
            raise AssertionError(f"exited ({self.proc.wait()}) before {prefix!r}: "
                                 f"{self.lines}, {self.stderr()}")
        return found(self.lines)[count - 1]

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read() if self.proc.poll() is not None else ""

    def finish(self) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"still running {WAIT}s after the signal: {self.lines}") from None
        return code, self.stderr()


def restored(directory: Path) -> tuple[int, str]:
    """(step, weights fingerprint) of the checkpoint a fresh process restores."""
    report = Trainer(directory, "report")
    _, step, fp = report.wait_line("restored ").split()
    code, err = report.finish()
    assert code == 0, err
    return int(step), fp


def test_a_second_sigterm_saves_at_once_from_the_watchdog(tmp_path: Path) -> None:
    run = tmp_path / "run"
    trainer = Trainer(run, "hang", grace="600")  # the deadline is ~10 min away
    _, step, fp = trainer.wait_line("ready ").split()
    trainer.proc.send_signal(signal.SIGTERM)
    trainer.wait_line("signal 15")  # the first one is recorded; the script stays stuck
    trainer.proc.send_signal(signal.SIGTERM)
    code, err = trainer.finish()
    assert code == 0, err
    assert "no step boundary reached in time; saving at once" in err
    assert restored(run) == (int(step), fp) == (5, fp)


def test_the_grace_deadline_saves_when_no_step_boundary_comes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    trainer = Trainer(run, "hang", grace="4")  # save deadline: max(4 - 2, 4 / 3) = 2 s
    _, step, fp = trainer.wait_line("ready ").split()
    trainer.proc.send_signal(signal.SIGTERM)  # one signal only
    code, err = trainer.finish()
    assert code == 0, err
    assert trainer.lines.count("signal 15") == 1
    assert "no step boundary reached in time; saving at once" in err
    assert restored(run) == (int(step), fp)


def test_ctrl_c_saves_at_the_next_step_and_exits_0(tmp_path: Path) -> None:
    run = tmp_path / "run"
    trainer = Trainer(run, "loop")
    seen = int(trainer.wait_line("step ", count=3).split()[1])
    trainer.proc.send_signal(signal.SIGINT)
    code, err = trainer.finish()
    assert code == 0, err
    assert "KeyboardInterrupt" not in err
    assert "SIGINT received, saving step" in err
    step, fp = restored(run)
    assert step >= seen
    assert f"step {step} {fp}" in trainer.lines  # the weights of the step it stopped at
