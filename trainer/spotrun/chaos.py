"""``spotrun chaos``: interrupt a training command, then prove its whole checkpoint unchanged.

The command first runs once uninterrupted (the reference). Then it runs to completion on one
checkpoint directory while being interrupted N times with SIGTERM and M times with SIGKILL
(every other SIGKILL aimed at a save in progress), restarted after each; the steps are chosen
by ``chaos_plan``. The final checkpoints of both runs are decoded with the library's reader
(never pickle) and compared whole by ``chaos_compare``: every tensor bit for bit and every
other value (RNG states, optimizer settings, scheduler, loader position, the script's state,
epoch and metrics). Verdict: IDENTICAL (exit 0), DIVERGED (1: the differences, each named
with a hint), FAILED (3: an attempt ended in a way it must not, or left nothing to compare).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch

from . import chaos_compare, chaos_plan, layout, marker
from .chaos_compare import Difference
from .chaos_plan import NONE, SIGKILL_IN_SAVE, SIGTERM, Interruption
from .localstore import LocalStore
from .manifest import ManifestError
from .reader import CorruptCheckpointError, decode_state, load_verified
from .store import StoreError, open_store

POLL = 0.002
EXIT_CODES = {"IDENTICAL": 0, "DIVERGED": 1, "FAILED": 3}


class ChaosRefused(ValueError):
    """A chaos run that could not prove anything as asked (the message says why and the fix)."""


@dataclass
class Attempt:
    kind: str  # the planned interruption, or NONE for the attempt that runs to the end
    started: float
    target: int | None = None  # the step the interruption waits for
    exit_code: int | None = None
    last_step: int | None = None
    restored_step: int = 0
    first_step_at: float | None = None
    signalled_at: float | None = None
    interrupted: bool = False  # the signal landed before the script had finished

    @property
    def resume_seconds(self) -> float | None:
        return None if self.first_step_at is None else self.first_step_at - self.started


@dataclass
class Report:
    attempts: list[Attempt] = field(default_factory=list)
    planned: int = 0
    reference_steps: int = 0
    final_step: int | None = None
    differences: list[Difference] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.problems or self.final_step is None:
            return "FAILED"
        return "DIVERGED" if self.differences else "IDENTICAL"

    @property
    def identical(self) -> bool:
        return self.verdict == "IDENTICAL"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    @property
    def interruptions(self) -> list[str]:
        """The kinds of the interruptions that really happened, in order."""
        return [a.kind for a in self.attempts if a.interrupted]


def steps_lost(before: Attempt, after: Attempt) -> int | None:
    if before.last_step is None:
        return None
    return max(before.last_step - after.restored_step, 0)


class _Progress:
    """One process's events in a progress log (``SPOTRUN_PROGRESS_FILE``), read as it grows."""

    def __init__(self, path: Path, pid: int) -> None:
        self.path, self.pid = path, pid
        self.events: list[dict[str, Any]] = []
        self.highest_step = 0  # of the step events read so far
        self._file: IO[bytes] | None = None
        self._partial = b""

    def poll(self) -> None:
        if self._file is None:
            try:
                self._file = open(self.path, "rb")  # noqa: SIM115 (held while the run lasts)
            except FileNotFoundError:
                return
        lines = (self._partial + self._file.read()).split(b"\n")
        self._partial = lines.pop()  # an unfinished line (or b"")
        for line in lines:
            try:
                event = json.loads(line)
            except (ValueError, RecursionError):
                continue  # a line cut by SIGKILL
            if isinstance(event, dict) and event.get("pid") == self.pid:
                self.events.append(event)
                if event.get("event") == "step" and type(event.get("step")) is int:
                    self.highest_step = max(self.highest_step, event["step"])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def steps(self) -> list[tuple[int, int | None, float]]:
        """(step, epoch or None, time) of every step event so far."""
        out = []
        for e in self.events:
            if e.get("event") == "step" and type(e.get("step")) is int:
                epoch = e.get("epoch")
                out.append((e["step"], epoch if type(epoch) is int else None, float(e["t"])))
        return out

    def reached(self, step: int) -> bool:
        self.poll()
        return self.highest_step >= step

    def restored_step(self) -> int:
        restores = [e["step"] for e in self.events if e.get("event") == "restore"]
        return int(restores[0]) if restores else 0


class _Stalled(Exception):
    pass


def _await(
    proc: subprocess.Popen[bytes], condition: Callable[[], bool], deadline: float, poll: float
) -> bool:
    """True once ``condition()`` holds; False if the process ended first."""
    while proc.poll() is None:
        if condition():
            return True
        if time.monotonic() > deadline:
            raise _Stalled
        time.sleep(poll)
    return False


def _saving(directory: Path) -> bool:
    try:
        return any(n.startswith(layout.TMP_PREFIX) for n in os.listdir(directory / "checkpoints"))
    except FileNotFoundError:
        return False


def _start(command: list[str], directory: Path, log: Path, remote: bool) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    if not remote:
        env.pop("SPOTRUN_STORAGE_URI", None)
    env["SPOTRUN_CHECKPOINT_DIR"] = str(directory)
    env["SPOTRUN_PROGRESS_FILE"] = str(directory / "progress.jsonl")
    directory.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _send(proc: subprocess.Popen[bytes], kind: str) -> None:
    if kind == SIGTERM:
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGKILL)


def refuse_unless_meaningful(workdir: Path, fresh_dir: bool, env: dict[str, str]) -> None:
    """ChaosRefused when the run could not prove anything: --fresh-dir without storage, a
    workdir or a storage prefix that already holds checkpoints (a run would resume from them)."""
    storage = env.get("SPOTRUN_STORAGE_URI")
    why = chaos_plan.fresh_dir_refusal(fresh_dir, storage)
    if why:
        raise ChaosRefused(why)
    for part in ("reference", "interrupted"):
        if (workdir / part).exists() and any((workdir / part).iterdir()):
            raise ChaosRefused(
                f"{workdir / part} is not empty (an earlier chaos run?): the runs would resume "
                "from its checkpoints; give an empty --workdir or leave it out"
            )
    if storage:
        names = layout.newest_first(open_store(storage).names())
        if names:
            raise ChaosRefused(
                f"SPOTRUN_STORAGE_URI {storage} already holds checkpoints (newest: step "
                f"{names[0][0]}): the interrupted run would resume from them, not from its own; "
                f"point it at an empty prefix, or empty this one (spotrun purge {storage})"
            )


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
    only what reached SPOTRUN_STORAGE_URI carries over. ``timeout``: seconds per run."""
    refuse_unless_meaningful(workdir, fresh_dir, dict(os.environ))
    report = Report()
    reference_dir, chaos_dir = workdir / "reference", workdir / "interrupted"
    say(f"chaos: reference run (uninterrupted) in {reference_dir}")
    started = time.monotonic()
    ref = _start(command, reference_dir, workdir / "reference.log", remote=False)
    watch = _Progress(reference_dir / "progress.jsonl", ref.pid)
    try:
        code = ref.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(ref.pid, signal.SIGKILL)
        ref.wait()
        code = None
    watch.poll()
    watch.close()
    if code != 0:
        ended = f"exited {code}" if code is not None else f"did not end within {timeout:g}s"
        report.problems.append(f"the uninterrupted run {ended}; see {workdir / 'reference.log'}")
        return report
    steps = watch.steps()
    report.reference_steps = steps[-1][0] if steps else 0
    say(f"chaos: reference took {time.monotonic() - started:.1f}s, {report.reference_steps} steps")
    ends = chaos_plan.epoch_ends([(step, epoch) for step, epoch, _ in steps])
    interruptions = chaos_plan.plan(kills, sigkills, seed, report.reference_steps, ends)
    report.planned = len(interruptions)
    say("chaos: plan " + ", ".join(f"{i.kind} at step {i.step}" for i in interruptions))
    directory = _interrupted_run(
        report, command, interruptions, chaos_dir, workdir, timeout, fresh_dir
    )
    if directory is not None:
        _compare(report, LocalStore(reference_dir), LocalStore(directory))
    return report


def _interrupted_run(
    report: Report,
    command: list[str],
    interruptions: list[Interruption],
    chaos_dir: Path,
    workdir: Path,
    timeout: float,
    fresh_dir: bool,
) -> Path | None:
    """Attempts until one ends on its own; the directory of the last, None after a problem."""
    log = workdir / "interrupted.log"
    pending: list[Interruption | None] = [*interruptions, None]
    for number, planned in enumerate(pending, start=1):
        directory = chaos_dir / f"node-{number}" if fresh_dir else chaos_dir
        attempt = _attempt(command, planned, directory, log, timeout)
        report.attempts.append(attempt)
        if attempt.exit_code is None:
            report.problems.append(
                f"attempt {number} ({attempt.kind}) did not end within --timeout {timeout:g}s; "
                f"see {log}"
            )
            return None
        finished_first = _finished_before(directory, attempt.signalled_at)
        attempt.interrupted, problem = chaos_plan.classify(
            attempt.kind, attempt.signalled_at is not None, finished_first, attempt.exit_code
        )
        say(
            f"chaos: attempt {number}: {attempt.kind:<16} "
            f"{'interrupted' if attempt.interrupted else 'ran to the end'} at step "
            f"{attempt.last_step}, exit {attempt.exit_code}"
        )
        if problem:
            report.problems.append(f"attempt {number} ({attempt.kind}) {problem}; see {log}")
            return None
        if not attempt.interrupted:
            return directory
    raise AssertionError("the last attempt is never interrupted")


def _attempt(
    command: list[str], planned: Interruption | None, directory: Path, log: Path, timeout: float
) -> Attempt:
    proc = _start(command, directory, log, remote=True)
    deadline = time.monotonic() + timeout
    attempt = Attempt(planned.kind if planned else NONE, time.time())
    attempt.target = planned.step if planned else None
    watch = _Progress(directory / "progress.jsonl", proc.pid)
    try:
        if planned is not None:
            reached = _await(proc, lambda: watch.reached(planned.step), deadline, POLL)
            if reached and planned.kind == SIGKILL_IN_SAVE:
                reached = _await(proc, lambda: _saving(directory), deadline, POLL / 4)
            if reached:
                attempt.signalled_at = time.time()
                _send(proc, planned.kind)
        attempt.exit_code = proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except (_Stalled, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    watch.poll()
    watch.close()
    steps = watch.steps()
    attempt.restored_step = watch.restored_step()
    attempt.last_step = steps[-1][0] if steps else None
    attempt.first_step_at = steps[0][2] if steps else None
    return attempt


def _finished_before(directory: Path, signalled_at: float | None) -> bool:
    """The script's exit note (written when its Checkpointer closed) predates the signal."""
    note = marker.read(directory)
    when = note.get("time") if note else None
    return signalled_at is not None and isinstance(when, float) and when <= signalled_at


def _final(store: LocalStore, run: str) -> tuple[int, dict[str, Any]] | str:
    """(step, the state and manifest fields) of a run's newest checkpoint, or why not."""
    newest = layout.newest_first(store.names())
    if not newest:
        return f"the {run} run left no checkpoint in {store.dir}"
    step, name = newest[0]
    try:
        loaded = load_verified(store, name)
        state = decode_state(loaded, torch.device("cpu"))
    except (ManifestError, CorruptCheckpointError, StoreError) as e:
        return f"the {run} run's newest checkpoint is invalid: {e}"
    fields = loaded.manifest.model_dump(include=set(chaos_compare.MANIFEST_FIELDS))
    return step, {**state, "manifest": fields}


def _compare(report: Report, reference: LocalStore, interrupted: LocalStore) -> None:
    ref, new = (
        _final(reference, chaos_compare.REFERENCE),
        _final(interrupted, chaos_compare.INTERRUPTED),
    )
    for found in (ref, new):
        if isinstance(found, str):
            report.problems.append(found)
    if isinstance(ref, str) or isinstance(new, str):
        return
    report.final_step = new[0]
    report.differences = chaos_compare.compare(ref[1], new[1])


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
            f"{i + 1:>3}  {attempt.kind if attempt.interrupted else NONE:<16} "
            f"{_show(attempt.last_step):>8} {_show(nxt.restored_step if nxt else None):>10} "
            f"{_show(lost):>10} {_show(resume, '.2f'):>8}"
        )
    lines.append(chaos_plan.count_line(report.interruptions, report.planned))
    lines.extend(f"problem: {p}" for p in report.problems)
    verdict = report.verdict
    if verdict == "FAILED":
        lines.append("FAILED: the runs could not be compared (see the problems above)")
    elif verdict == "DIVERGED":
        count = len(report.differences)
        lines.append(
            f"DIVERGED: the final checkpoint (step {report.final_step}) differs from the "
            f"uninterrupted run's in {count} value{'s' if count != 1 else ''}:"
        )
        lines.extend(chaos_compare.format_findings(chaos_compare.explain(report.differences)))
    else:
        lines.append(
            f"IDENTICAL: the whole final checkpoint (step {report.final_step}) matches the "
            "uninterrupted run: every tensor bit for bit, every other value (RNG, optimizer, "
            "scheduler, loader, the script's state, epoch, metrics) equal"
        )
    return lines


def _show(value: float | int | None, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
