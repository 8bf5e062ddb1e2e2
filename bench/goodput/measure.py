"""What a replay measured, from the trainers' progress logs and the bench's node bills (pure).

A progress log (``SPOTRUN_PROGRESS_FILE``) holds every trainer process of a job, its events
tagged with its pid: ``restore`` (the step it restored), ``step`` (each optimizer step, wall
time) and ``saved`` (step, reason, seconds the save took).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from goodput.calculator import Seconds


@dataclass(frozen=True)
class Attempt:
    """One trainer process's progress."""

    restored: int  # the step it started from
    last: int  # the last step it made (restored if none)
    first_step_at: float | None
    last_step_at: float | None
    step_intervals: tuple[float, ...]
    periodic_saves: tuple[float, ...]  # seconds each periodic save blocked training


def attempts(runs: list[list[dict[str, Any]]], until: float | None = None) -> list[Attempt]:
    """Each trainer process's progress, in order of start (``runs``: events per process),
    as it stood at wall time ``until`` (all of it if None)."""
    out = []
    for every in runs:
        events = [e for e in every if until is None or float(e["t"]) <= until]
        if not events:
            continue
        restored = next((int(e["step"]) for e in events if e["event"] == "restore"), 0)
        steps = [(float(e["t"]), int(e["step"])) for e in events if e["event"] == "step"]
        saves = tuple(float(e.get("seconds") or 0.0) for e in events
                      if e["event"] == "saved" and e.get("reason") == "periodic")
        times = [t for t, _ in steps]
        out.append(Attempt(
            restored=restored,
            last=max([restored] + [s for _, s in steps]),
            first_step_at=times[0] if times else None,
            last_step_at=times[-1] if times else None,
            step_intervals=tuple(b - a for a, b in zip(times, times[1:], strict=False)),
            periodic_saves=saves,
        ))
    return out


@dataclass(frozen=True)
class Measured(Seconds):
    useful_steps: int
    steps_redone: tuple[int, ...]  # per restart: steps the next attempt made again
    restarts: int
    step_seconds: float
    save_seconds: float


def redone(tries: list[Attempt]) -> tuple[int, ...]:
    """Per restart: the steps the next attempt makes again (the last step its predecessor
    made minus the step it restored)."""
    return tuple(max(0, prev.last - cur.restored)
                 for prev, cur in zip(tries, tries[1:], strict=False))


def pauses(tries: list[Attempt]) -> tuple[float, ...]:
    """Per restart: seconds training stood still, from the last step an attempt made to the
    first step of the next (one that never stepped is skipped: the pause runs on to the next
    that did)."""
    stepped = [a for a in tries if a.first_step_at is not None and a.last_step_at is not None]
    return tuple(max(0.0, float(cur.first_step_at or 0.0) - float(prev.last_step_at or 0.0))
                 for prev, cur in zip(stepped, stepped[1:], strict=False))


def measure(tries: list[Attempt], paid_seconds: float, elapsed_seconds: float,
            after: list[Attempt] | None = None) -> Measured:
    """Useful steps = where the job stands at the end (steps made twice count once);
    a step's time = the median interval between steps (periodic saves excluded). Steps
    redone come from ``after`` (the attempts once the last one restored) when given."""
    intervals = [i for a in tries for i in a.step_intervals]
    step = statistics.median(intervals) if intervals else 0.0
    saves = [s for a in tries for s in a.periodic_saves]
    useful = tries[-1].last if tries else 0
    return Measured(useful_seconds=useful * step, paid_seconds=paid_seconds,
                    elapsed_seconds=elapsed_seconds, useful_steps=useful,
                    steps_redone=redone(tries if after is None else after),
                    restarts=max(0, len(tries) - 1), step_seconds=step,
                    save_seconds=statistics.median(saves) if saves else 0.0)


def bills(adds: list[float], reclaims: list[float], end: float) -> float:
    """Paid node seconds: each node from its capacity-up instant to its reclaim (the notice's
    end, when the cloud takes it back) or the replay's end."""
    total = 0.0
    for i, start in enumerate(adds):
        total += (reclaims[i] if i < len(reclaims) else end) - start
    return total
