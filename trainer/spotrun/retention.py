"""Which checkpoints to delete: keep the newest K and the best one by a named metric."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

Mode = Literal["min", "max"]

# attempts of one job that can write at once: the one saving on a reclaimed node, its successor
OVERLAPPING_WRITERS = 2


@dataclass(frozen=True)
class KeepBest:
    metric: str
    mode: Mode = "min"


@dataclass(frozen=True)
class Entry:
    step: int
    metrics: dict[str, float]
    writer: str = ""


def to_delete(entries: list[Entry], keep: int, best: KeepBest | None = None) -> list[int]:
    """Steps to delete, oldest first. ``keep`` >= 1 newest are always kept."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (the newest checkpoint is never deleted), got {keep}")
    newest = sorted(entries, key=lambda e: e.step, reverse=True)
    kept = {e.step for e in newest[:keep]}
    if best is not None:
        winner = best_entry(entries, best)
        if winner is not None:
            kept.add(winner.step)
    kept |= newest_per_writer(entries)
    return sorted(e.step for e in entries if e.step not in kept)


def to_make_room(entries: list[Entry], keep: int, best: KeepBest | None = None) -> list[int]:
    """Steps to delete before a save that found the disk full, oldest first.

    The save adds one checkpoint, so ``keep - 1`` newest stay (never fewer than 1: the newest is
    never deleted), and the best one. Unlike ``to_delete``, another writer's newest is not
    spared: a full disk cannot hold it and the new, newer checkpoint both.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (the newest checkpoint is never deleted), got {keep}")
    anonymous = [replace(e, writer="") for e in entries]
    return to_delete(anonymous, max(keep - 1, 1), best)


def newest_per_writer(entries: list[Entry], writers: int = OVERLAPPING_WRITERS) -> set[int]:
    """The newest step of each of the ``writers`` most recent writers (ranked by their newest
    step): never deleted by another writer's retention, so two overlapping attempts of a job
    (the one still saving on a reclaimed node, and its successor) cannot delete each other's
    newest checkpoint. Older writers are finished attempts: sparing each one's newest forever
    would keep one more checkpoint per preemption."""
    newest: dict[str, int] = {}
    for e in entries:
        if e.writer:
            newest[e.writer] = max(newest.get(e.writer, -1), e.step)
    return set(sorted(newest.values(), reverse=True)[:writers])


def best_entry(entries: list[Entry], best: KeepBest) -> Entry | None:
    """The entry with the best finite value of ``best.metric``; the newest wins a tie."""
    scored = [
        e for e in entries if best.metric in e.metrics and math.isfinite(e.metrics[best.metric])
    ]
    if not scored:
        return None
    sign = 1.0 if best.mode == "min" else -1.0
    return min(scored, key=lambda e: (sign * e.metrics[best.metric], -e.step))
