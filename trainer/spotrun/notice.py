"""What the trainer does with the notice a SIGTERM gives: train on, save at the last safe moment.

A spot node's SIGTERM comes with a notice, the pod's grace period (``SPOTRUN_GRACE_SECONDS``,
from ``terminationGracePeriodSeconds``; GKE spot gives 15 s, AWS 120 s). Saving at once and
exiting leaves the node idle for the rest of it. Instead the trainer keeps training while one
more step still leaves room for the final save and its upload, and saves at the step boundary
where it no longer would:

    save_by     = deadline - MARGIN x (save + upload) - RESERVE_SECONDS
    train_until = save_by - step

``save`` is the longest local save (snapshot to committed folder) measured on this run's
earlier checkpoints, ``upload`` the longest wait from a local commit to the step being durable
in S3 (the sidecar's or the direct uploader's, 0 when nothing uploads), ``step`` the longest of
the recent steps. A step boundary before ``train_until`` trains on; the first one after it
saves. If no boundary comes by ``save_by`` (a step far longer than the ones measured), the
watchdog saves the last boundary's state at once.

It saves at once (at the next step boundary, the watchdog's deadline as before) when nothing
was measured yet, when the script or the pod asks for it (``save_at_once``), on Ctrl-C, or
when the notice is too short to train on. A second signal always saves at once.

Pure: ``Checkpointer`` measures (``Longest``) and asks ``plan``; nothing here reads a clock.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from .signals import save_deadline

MARGIN = 1.5  # the measured save + upload times this, against a slower save under pressure
# after the save: the trainer's exit (a loaded interpreter takes seconds on a busy node), then
# the sidecar's margin before the deadline (its report and exit)
RESERVE_SECONDS = 4.0
RECENT = 16  # how many recent measurements ``Longest`` remembers


class Longest:
    """The longest of the last ``RECENT`` measurements (None before the first)."""

    def __init__(self, size: int = RECENT) -> None:
        self._recent: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        if seconds >= 0:
            self._recent.append(seconds)

    @property
    def value(self) -> float | None:
        return max(self._recent) if self._recent else None


class Measurements:
    """What a run measures for ``plan``, fed by the Checkpointer with its clocks' readings:
    step boundaries (monotonic), saves (their seconds), local commits and the times steps
    became durable in S3 (wall clock, the sidecar's note is in wall time)."""

    def __init__(self) -> None:
        self.saves, self.uploads, self.steps = Longest(), Longest(), Longest()
        self._last_step: float | None = None
        self._committed: dict[int, float] = {}  # step -> when it was committed locally
        self._durable_seen: int | None = None  # the step whose upload time was counted
        self._durable: int | None = None  # the newest step known durable
        self._lock = threading.Lock()  # fed by the training, writer and watchdog threads

    def stepped(self, now: float) -> None:
        if self._last_step is not None:
            self.steps.add(now - self._last_step)
        self._last_step = now

    def saved(self, seconds: float, step: int, committed_at: float) -> None:
        with self._lock:
            self.saves.add(seconds)
            self._committed[step] = committed_at
            while len(self._committed) > RECENT:
                del self._committed[min(self._committed)]

    def durable(self, step: int, at: float) -> None:
        """``step`` became durable at ``at``: a step this run committed gives one upload time
        (counted once; a step restored, or a note from another run, gives none)."""
        with self._lock:
            committed = self._committed.get(step)
            if committed is not None and at < committed:
                return  # "durable" before this run committed it: another run's note
            self._durable = max(step, self._durable if self._durable is not None else step)
            if committed is None or step == self._durable_seen:
                return
            self._durable_seen = step
            self.uploads.add(at - committed)

    def costs(self, uploads: bool, writing: bool) -> Costs:
        """The measured costs. ``uploads``: a save is durable only once uploaded (then an
        upload still running makes the final one wait for it); ``writing``: a save still
        being written makes the final save wait for it."""
        with self._lock:
            newest = max(self._committed, default=None)
            behind = uploads and newest is not None and newest != self._durable
        upload = self.uploads.value if uploads else 0.0
        return Costs(self.saves.value, upload, self.steps.value, behind, writing)


@dataclass(frozen=True)
class Costs:
    """What this run measured, in seconds (None: not measured yet)."""

    save: float | None
    upload: float | None  # 0.0 when no upload follows a save (no S3)
    step: float | None
    upload_behind: bool = False  # the newest save is not durable yet: its upload goes first
    save_behind: bool = False  # a save is still being written: the final one waits for it

    @property
    def total(self) -> float | None:
        """Save + upload (each twice when one is still under way), or None while either is
        unmeasured."""
        if self.save is None or self.upload is None:
            return None
        return self.save * (1 + self.save_behind) + self.upload * (1 + self.upload_behind)


@dataclass(frozen=True)
class Plan:
    """When to save after the first signal; every time in seconds after it."""

    deadline: float  # the end of the grace period
    train_until: float  # a step boundary before this trains on (0: none does)
    save_by: float  # the watchdog saves at once when no boundary saved by then
    cost: float | None  # the measured save + upload
    why: str  # why the save is at once ("" when training on)

    @property
    def trains_on(self) -> bool:
        return self.train_until > 0

    def keep_training(self, elapsed: float) -> bool:
        """True at a step boundary ``elapsed`` seconds after the signal that may train on."""
        return elapsed < self.train_until

    def describe(self, signame: str, elapsed: float) -> str:
        """The log line at the signal, times counted from now (``elapsed`` after it)."""
        head = f"{signame}: deadline in {self.deadline - elapsed:.1f} s"
        if self.cost is not None:
            head += f", save+upload measured {self.cost:.1f} s"
        if self.trains_on:
            return f"{head}: training on until {self.train_until - elapsed:.1f} s"
        return f"{head}: saving at the next step boundary ({self.why})"


def plan(grace_seconds: float, costs: Costs, at_once: str | None = None) -> Plan:
    """The plan for a first signal, given the grace period, this run's measurements and, in
    ``at_once``, a reason the caller has to save at once (None: use the notice if it can)."""
    watchdog = save_deadline(grace_seconds, costs.save or 0.0)
    total = costs.total
    why = at_once
    if why is None and total is None:
        why = "no save+upload measured yet on this run"
    if why is None and costs.step is None:
        why = "no step time measured yet"
    if why is not None or total is None or costs.step is None:
        return Plan(grace_seconds, 0.0, watchdog, total, why or "")
    save_by = grace_seconds - MARGIN * total - RESERVE_SECONDS
    train_until = save_by - costs.step
    if train_until <= 0:
        short = f"the {grace_seconds:g} s notice leaves no time for another step"
        return Plan(grace_seconds, 0.0, watchdog, total, short)
    return Plan(grace_seconds, train_until, save_by, total, "")
