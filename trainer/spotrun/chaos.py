"""``spotrun chaos``: interrupt a training command at random instants, then prove nothing was lost.

The command runs to completion on one checkpoint directory while being interrupted N times
with SIGTERM and M times with SIGKILL (half of the SIGKILLs aimed at an instant a checkpoint is
being written), restarted after each. Then it runs once uninterrupted on a fresh directory, and
every tensor of the two final checkpoints (model, optimizer, RNG, ...) is compared bit for bit.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import layout, progress
from .catalog import fingerprint
from .localstore import LocalStore

POLL = 0.002


@dataclass
class Attempt:
    kind: str  # "sigterm", "sigkill", "sigkill-in-save" or "none"
    started: float
    exit_code: int | None = None
    last_step: int | None = None
    restored_step: int = 0
    first_step_at: float | None = None
    interrupted: bool = False

    @property
    def resume_seconds(self) -> float | None:
        return None if self.first_step_at is None else self.first_step_at - self.started


@dataclass
class Report:
    attempts: list[Attempt] = field(default_factory=list)
    reference_steps: int = 0
    final_step: int | None = None
    differing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differing and not self.problems and self.final_step is not None


def plan(kills: int, sigkills: int, seed: int) -> list[str]:
    """The order of interruptions; every other SIGKILL is aimed at a save in progress."""
    kinds = ["sigterm"] * kills + [
        "sigkill-in-save" if i % 2 == 0 else "sigkill" for i in range(sigkills)
    ]
    random.Random(seed).shuffle(kinds)
    return kinds


def steps_lost(before: Attempt, after: Attempt) -> int | None:
    if before.last_step is None:
        return None
    return max(before.last_step - after.restored_step, 0)


class _Runner:
    def __init__(self, command: list[str]) -> None:
        self.command = command

    def start(self, directory: Path, log: Path, remote: bool = True) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        if not remote:
            env.pop("SPOTRUN_STORAGE_URI", None)
        env["SPOTRUN_CHECKPOINT_DIR"] = str(directory)
        env["SPOTRUN_PROGRESS_FILE"] = str(directory / "progress.jsonl")
        directory.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            return subprocess.Popen(
                self.command,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


def _events(directory: Path, pid: int) -> list[dict[str, object]]:
    return [e for e in progress.read(str(directory / "progress.jsonl")) if e.get("pid") == pid]


def _fill(attempt: Attempt, directory: Path, pid: int) -> None:
    events = _events(directory, pid)
    steps = [e for e in events if e["event"] == "step"]
    restores = [e for e in events if e["event"] == "restore"]
    attempt.restored_step = int(restores[0]["step"]) if restores else 0  # type: ignore[call-overload]
    attempt.last_step = int(steps[-1]["step"]) if steps else None  # type: ignore[call-overload]
    attempt.first_step_at = float(steps[0]["t"]) if steps else None  # type: ignore[arg-type]


def _saving(directory: Path) -> bool:
    try:
        return any(n.startswith(layout.TMP_PREFIX) for n in os.listdir(directory / "checkpoints"))
    except FileNotFoundError:
        return False


def _interrupt(proc: subprocess.Popen[bytes], kind: str, delay: float, directory: Path) -> bool:
    """Wait ``delay`` seconds of training, then interrupt; False if it finished first."""
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        time.sleep(POLL)
    if kind == "sigkill-in-save":
        while not _saving(directory):
            if proc.poll() is not None:
                return False
            time.sleep(POLL / 4)
    if proc.poll() is not None:
        return False
    if kind == "sigterm":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
    return True


def run(
    command: list[str],
    kills: int,
    sigkills: int,
    seed: int,
    workdir: Path,
    timeout: float,
    fresh_dir: bool = False,
) -> Report:
    """``fresh_dir``: every restart gets an empty checkpoint directory, as on a new node, so
    only what reached SPOTRUN_STORAGE_URI carries over."""
    report = Report()
    runner = _Runner(command)
    rng = random.Random(seed)
    reference_dir, chaos_dir = workdir / "reference", workdir / "interrupted"
    say(f"chaos: reference run (uninterrupted) in {reference_dir}")
    started = time.time()
    ref = runner.start(reference_dir, workdir / "reference.log", remote=False)
    if ref.wait(timeout=timeout) != 0:
        report.problems.append(
            f"the uninterrupted run exited {ref.returncode}; see {workdir / 'reference.log'}"
        )
        return report
    ref_events = _events(reference_dir, ref.pid)
    steps = [e for e in ref_events if e["event"] == "step"]
    report.reference_steps = int(steps[-1]["step"]) if steps else 0  # type: ignore[call-overload]
    train_seconds = (float(steps[-1]["t"]) - float(steps[0]["t"])) if steps else 1.0  # type: ignore[arg-type]
    say(f"chaos: reference took {time.time() - started:.1f}s, {report.reference_steps} steps")

    kinds = plan(kills, sigkills, seed)
    window = max(train_seconds, 0.5) / (len(kinds) + 1)
    directory = chaos_dir
    for number, kind in enumerate([*kinds, "none"], start=1):
        directory = chaos_dir / f"node-{number}" if fresh_dir else chaos_dir
        proc = runner.start(directory, workdir / "interrupted.log")
        attempt = Attempt(kind, time.time())
        if kind != "none":
            # training starts after imports and the restore: time the delay from there
            while proc.poll() is None and not any(
                e["event"] in ("start", "restore") for e in _events(directory, proc.pid)
            ):
                time.sleep(POLL)
            attempt.interrupted = _interrupt(proc, kind, rng.uniform(0.3, 1.2) * window, directory)
        attempt.exit_code = proc.wait(timeout=timeout)
        _fill(attempt, directory, proc.pid)
        report.attempts.append(attempt)
        expected = 0 if kind in ("sigterm", "none") or not attempt.interrupted else -9
        if attempt.exit_code != expected:
            report.problems.append(
                f"attempt {len(report.attempts)} ({kind}) exited {attempt.exit_code}, expected "
                f"{expected}; see {workdir / 'interrupted.log'}"
            )
        say(
            f"chaos: attempt {len(report.attempts)}: {kind:<16} "
            f"{'interrupted' if attempt.interrupted else 'ran to the end'} at step "
            f"{attempt.last_step}, exit {attempt.exit_code}"
        )
        if kind == "none" or not attempt.interrupted:
            break
    _compare(report, LocalStore(reference_dir), LocalStore(directory))
    return report


def _compare(report: Report, reference: LocalStore, interrupted: LocalStore) -> None:
    ref_newest = layout.newest_first(reference.names())
    new_newest = layout.newest_first(interrupted.names())
    if not ref_newest or not new_newest:
        report.problems.append("a run left no checkpoint to compare")
        return
    (ref_step, ref_name), (step, name) = ref_newest[0], new_newest[0]
    report.final_step = step
    if ref_step != step:
        report.problems.append(f"final steps differ: reference {ref_step}, interrupted {step}")
        return
    a, b = fingerprint(reference, ref_name), fingerprint(interrupted, name)
    report.differing = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def format_report(report: Report) -> list[str]:
    lines = [
        f"{'#':>3}  {'INTERRUPTION':<16} {'AT STEP':>8} {'RESUMED AT':>10} "
        f"{'STEPS LOST':>10} {'RESUME S':>8}"
    ]
    for i, attempt in enumerate(report.attempts):
        nxt = report.attempts[i + 1] if i + 1 < len(report.attempts) else None
        lost = steps_lost(attempt, nxt) if nxt else None
        resume = nxt.resume_seconds if nxt else None
        lines.append(
            f"{i + 1:>3}  {attempt.kind if attempt.interrupted else 'none':<16} "
            f"{_show(attempt.last_step):>8} {_show(nxt.restored_step if nxt else None):>10} "
            f"{_show(lost):>10} {_show(resume, '.2f'):>8}"
        )
    lines.extend(f"problem: {p}" for p in report.problems)
    if report.differing:
        lines.append(
            f"DIVERGED: {len(report.differing)} tensors differ, e.g. "
            f"{', '.join(report.differing[:5])}"
        )
    elif report.identical:
        lines.append(
            f"IDENTICAL: every tensor of the final checkpoint (step {report.final_step}) "
            "matches the uninterrupted run bit for bit"
        )
    return lines


def _show(value: float | int | None, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
