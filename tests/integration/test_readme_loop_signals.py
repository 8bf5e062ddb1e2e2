"""The README loop as a real process, signalled where users get hurt: during end-of-epoch work
(the grace deadline passes there), and with Ctrl-C; and what it prints on its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).with_name("readme_loop.py")
WAIT = 180.0  # for a process that should end at once: far beyond it means the path is broken


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTRUN_")}
    return env | extra


def _start(directory: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(directory), *args],
        env=_env(**env),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _read_until(proc: subprocess.Popen[str], line: str) -> list[str]:
    """stdout lines up to and including ``line`` (fails if the process ends first)."""
    assert proc.stdout is not None
    seen: list[str] = []
    while not seen or seen[-1] != line:
        text = proc.stdout.readline()
        if not text:
            _, err = proc.communicate(timeout=WAIT)
            raise AssertionError(f"exited {proc.returncode} before {line!r}: {seen}\n{err}")
        seen.append(text.strip())
    return seen


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=WAIT)
    return proc.returncode, out, err


def _final(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("final "))


def test_sigterm_during_end_of_epoch_work_resumes_with_the_scheduler_of_that_step(
    tmp_path: Path,
) -> None:
    """SIGTERM lands in the evaluation after sched.step(); no step boundary comes before the
    deadline, so the watchdog saves. The checkpoint pairs step 3 with step 3's scheduler,
    extras and ckpt.state: the resumed run ends exactly as an uninterrupted one (before the
    fix: half the learning rate, last_epoch one too far, one evaluation counted twice)."""
    code, out, err = _finish(_start(tmp_path / "reference"))
    assert code == 0, err
    reference = _final(out)
    assert "last_epoch=3 evaluations=3 state_lr=0.015625" in reference

    run = tmp_path / "run"
    first = _start(run, "--hang-at-epoch-end", "0", SPOTRUN_GRACE_SECONDS="3")
    _read_until(first, "evaluating 0")  # sched.step() ran; the evaluation now outlasts the grace
    first.send_signal(signal.SIGTERM)
    code, _, err = _finish(first)
    assert code == 0, err
    assert "saving at once" in err and "saved step 3 (preemption)" in err

    code, out, err = _finish(_start(run))
    assert code == 0, err
    assert "restored step 3 (epoch 0)" in err
    assert _final(out) == reference


@pytest.mark.parametrize("mode", ["exit", "raise"])
def test_ctrl_c_saves_then_exits_or_raises_keyboard_interrupt(tmp_path: Path, mode: str) -> None:
    """Default: Ctrl-C saves at the next step and exits 0 (the script's ``except
    KeyboardInterrupt`` never runs). ``on_interrupt="raise"``: it saves, then raises there, and
    the script's cleanup runs to its end even past the grace deadline."""
    run = tmp_path / "run"
    proc = _start(
        run,
        "--epochs=1000",
        "--step-seconds=0.05",
        f"--on-interrupt={mode}",
        "--cleanup-seconds=3",  # longer than the save deadline of a 3 s grace period
        SPOTRUN_GRACE_SECONDS="3",
    )
    _read_until(proc, "step 2")
    proc.send_signal(signal.SIGINT)
    code, out, err = _finish(proc)
    printed = [int(line.split()[1]) for line in out.splitlines() if line.startswith("step ")]
    steps = max(printed, default=2) + 1  # the step() that saw the signal prints nothing
    if mode == "exit":
        assert code == 0 and "cleanup ran" not in out, (out, err)
        assert f"saved step {steps} (preemption)" in err
    else:
        assert code == 3 and out.rstrip().endswith("cleanup ran"), (out, err)
        assert f"saved step {steps} (interrupt)" in err
        assert "raising KeyboardInterrupt" in err and "saving at once" not in err
    code, out, err = _finish(_start(run, "--epochs=0"))
    assert code == 0 and f"restored step {steps} " in err, err


def test_spotrun_lines_reach_stderr_once_whatever_the_script_configures(tmp_path: Path) -> None:
    code, _, err = _finish(_start(tmp_path / "plain", "--epochs=1"))
    assert code == 0, err
    assert "spotrun: no checkpoint in" in err and "spotrun: saved step 3 (final)" in err

    code, _, err = _finish(_start(tmp_path / "basic", "--epochs=1", "--logging=basic"))
    assert code == 0, err
    lines = err.splitlines()
    assert lines.count(next(line for line in lines if "saved step 3 (final)" in line)) == 1
    assert all(line.startswith("LOG ") for line in lines if "spotrun:" in line), err

    code, _, err = _finish(_start(tmp_path / "quiet", "--epochs=1", SPOTRUN_LOG_LEVEL="warning"))
    assert code == 0 and "spotrun:" not in err, err
