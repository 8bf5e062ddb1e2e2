"""Deadline-aware placement (issue 15, Build 4): spot while the job can still finish on
on-demand in time, on-demand only when it must, and back to spot once spot is free again.

The rule is *uniform progress* (Wu et al., "Can't Be Late", NSDI '24): a job that must do
``total`` steps between ``start`` and ``deadline`` is on track at time ``t`` when it has done at
least ``total * (t - start) / (deadline - start)`` steps (the line). ``choose`` decides the
capacity of the attempt to run now:

1. **must**: on-demand when only on-demand can still finish in time: the remaining steps at
   the measured rate plus one restart (``restart_seconds``: a new pod, its restore; measured
   from the job's own restarts by ``measure_restart`` below) leave no more
   than ``margin_seconds`` before the deadline. Nothing else is considered then.
2. **behind, spot short**: on-demand when spot capacity is short now (the attempt waits for it,
   or was just preempted and none is free) and the job is behind the line: waiting would put it
   further behind. Ahead of the line, it waits for spot: the slack pays for the wait.
3. **back to spot**: a job on on-demand returns to spot where there is capacity while its slack
   covers two more restarts beyond the margin (leaving costs one restart, and a preemption soon
   after costs another): spot trains as fast, so behind the line is no reason to stay. While
   spot is short it stays on on-demand.
4. otherwise spot.

Every ``Choice`` says why, and ``projected_finish`` (on-demand from now, the safe bound) is what
the status shows. Pure: times are seconds since the epoch, the caller reads them off the clock
and the trainer's progress.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Capacity = Literal["spot", "on-demand"]


@dataclass(frozen=True)
class Progress:
    """What the operator knows when it decides (seconds since the epoch, steps)."""

    now: float
    start: float
    deadline: float
    total_steps: int
    done_steps: int
    step_seconds: float  # the trainer's measured seconds per step
    restart_seconds: float  # a new attempt's pod start and restore
    margin_seconds: float = 0.0  # kept free before the deadline

    def __post_init__(self) -> None:
        if not self.deadline > self.start:
            raise ValueError(f"deadline {self.deadline} is not after start {self.start}")
        if self.total_steps < 1 or self.done_steps < 0:
            raise ValueError(f"steps must be total >= 1, done >= 0: {self}")
        if self.step_seconds <= 0 or self.restart_seconds < 0 or self.margin_seconds < 0:
            raise ValueError(f"step_seconds must be > 0, the others >= 0: {self}")

    @property
    def remaining_seconds(self) -> float:
        """Training time the remaining steps take."""
        return max(0, self.total_steps - self.done_steps) * self.step_seconds

    def line(self, at: float) -> float:
        """The steps uniform progress asks for at time ``at``."""
        share = (at - self.start) / (self.deadline - self.start)
        return self.total_steps * min(1.0, max(0.0, share))

    def slack(self) -> float:
        """Seconds to spare if the job went to on-demand now (one restart) and stayed there."""
        return self.deadline - self.now - self.restart_seconds - self.remaining_seconds


@dataclass(frozen=True)
class Choice:
    capacity: Capacity
    reason: str
    projected_finish: float  # on-demand from now: one restart, then the remaining steps
    slack_seconds: float


def choose(p: Progress, current: Capacity | None, spot_short: bool) -> Choice:
    """The capacity of the attempt to run now (module docstring).

    ``current``: what the running attempt runs on (None: none runs); ``spot_short``: spot
    capacity is short now (the attempt waits for it, or the last one was just preempted)."""
    slack = p.slack()
    finish = p.now + p.restart_seconds + p.remaining_seconds

    def said(capacity: Capacity, reason: str) -> Choice:
        return Choice(capacity, reason, finish, slack)

    if p.done_steps >= p.total_steps:
        return said(current or "spot", "the job has done its steps")
    line = p.line(p.now)
    where = f"step {p.done_steps} of {p.total_steps}, the line says {line:.0f}"
    if slack <= p.margin_seconds:
        return said(
            "on-demand",
            f"must: on-demand finishes {-slack:.0f}s after the deadline at the earliest"
            if slack < 0 else f"must: on-demand from now leaves {slack:.0f}s before the deadline",
        )
    if current == "on-demand":
        if not spot_short and slack > p.margin_seconds + 2 * p.restart_seconds:
            return said("spot", f"back to spot: {slack:.0f}s of slack covers two restarts "
                        f"({where})")
        return said("on-demand", f"staying on on-demand ({where}, {slack:.0f}s of slack)")
    if spot_short and p.done_steps < line:
        return said("on-demand", f"behind while spot is short ({where})")
    if spot_short:
        return said("spot", f"ahead ({where}): waiting for spot, {slack:.0f}s of slack")
    return said("spot", f"on track ({where}), {slack:.0f}s of slack")


MAX_STEP_SECONDS = 86_400.0  # a measured step slower than a day is taken as a bad reading
CLOCK_SKEW_SECONDS = 60.0  # a checkpoint time this far ahead of the operator's clock is refused


@dataclass(frozen=True)
class Sample:
    """A durable checkpoint seen while attempt ``attempt`` ran (``time``: seconds since the
    epoch when it became durable)."""

    attempt: int
    step: int
    time: float


@dataclass(frozen=True)
class Measured:
    """What ``measure`` makes of a new checkpoint: the sample to keep, the step time (the old
    one when nothing new was learnt) and, when the checkpoint was refused, why."""

    sample: Sample | None
    step_seconds: float | None
    problem: str | None = None


def measure(
    kept: Sample | None,
    seen: Sample,
    attempt_start: float,
    now: float,
    step_seconds: float | None,
) -> Measured:
    """The step time from two durable checkpoints of one attempt: ``kept`` (the first seen in
    it) and ``seen`` (the newest). Across attempts the time between two checkpoints holds the
    restart, so a new attempt starts a new sample. Refused, with the reason: a checkpoint saved
    before the attempt started (the one it restored), in the future, before ``kept`` or at the
    same step, or one giving a step time out of (0, MAX_STEP_SECONDS]."""
    if seen.time < attempt_start:
        return Measured(kept, step_seconds)  # the checkpoint it restored: nothing to learn
    if seen.time > now + CLOCK_SKEW_SECONDS:
        return Measured(kept, step_seconds, f"checkpoint step {seen.step} is dated "
                        f"{seen.time - now:.0f}s in the future: ignored")
    if kept is None or kept.attempt != seen.attempt or kept.time < attempt_start:
        return Measured(seen, step_seconds)
    steps, seconds = seen.step - kept.step, seen.time - kept.time
    if steps == 0:
        return Measured(kept, step_seconds)
    if steps < 0 or seconds <= 0:
        return Measured(kept, step_seconds, f"checkpoint step {seen.step} at {seconds:+.0f}s "
                        f"after step {kept.step} of the same attempt: ignored")
    rate = seconds / steps
    if rate > MAX_STEP_SECONDS:
        return Measured(kept, step_seconds, f"{rate:.0f}s per step is beyond "
                        f"{MAX_STEP_SECONDS:.0f}s: ignored")
    return Measured(kept, rate)


# -- the restart cost ---------------------------------------------------------------------

MAX_RESTART_SECONDS = 3600.0  # a restart longer than an hour is a wait for capacity or a clock jump
RESTART_READINGS = 3  # the restart cost the rule uses is the largest of the newest readings


@dataclass(frozen=True)
class Resumed:
    """The checkpoint an attempt resumed from (``time``: when it became durable, when known)."""

    step: int
    time: float | None = None


@dataclass(frozen=True)
class RestartReading:
    """What ``measure_restart`` makes of a checkpoint seen in a restarted attempt: ``resumed``
    still waiting for the attempt's own checkpoint (None: the measurement is over), the
    restart's seconds once measured, and, when the reading was refused, why."""

    resumed: Resumed | None
    seconds: float | None = None
    problem: str | None = None


def measure_restart(
    resumed: Resumed,
    seen: Sample,
    attempt_start: float,
    now: float,
    step_seconds: float | None,
    earlier_saving: bool = False,
) -> RestartReading:
    """One restart's cost: the time from the attempt's start to its first own durable
    checkpoint, less the steps it trained since the checkpoint it resumed from at the measured
    step time. The restart counts from the attempt's start (its pod's binding to a node: a
    wait for capacity is no restart cost) or, when the checkpoint it restored became durable
    later (a warm start: the pod is made at the notice, the attempt before still trains and
    saves), from then.

    A checkpoint dated no later than that, at no newer step than ``resumed``, or seen while an
    earlier attempt still saves (``earlier_saving``) is the one the attempt restores: it
    becomes ``resumed`` (what the sidecar restored is preferred to what the status said when
    the attempt began). The attempt's own checkpoint before the step time is measured keeps
    waiting (any later one of the attempt measures it as well), and so does one dated in the
    future (``measure`` refuses it). Refused with the reason: a
    negative cost (the steps take longer than the time elapsed: a clock jump or a bad step
    time) or one beyond ``MAX_RESTART_SECONDS``."""
    since = max(attempt_start, resumed.time if resumed.time is not None else attempt_start)
    if earlier_saving or seen.time <= since or seen.step <= resumed.step:
        if seen.step >= resumed.step:
            return RestartReading(Resumed(seen.step, seen.time))
        return RestartReading(resumed)
    if seen.time > now + CLOCK_SKEW_SECONDS:  # ``measure`` says why
        return RestartReading(resumed)
    if step_seconds is None or not 0 < step_seconds <= MAX_STEP_SECONDS:
        return RestartReading(resumed)
    trained = (seen.step - resumed.step) * step_seconds
    cost = seen.time - since - trained
    what = (f"restart of attempt {seen.attempt}: step {seen.step} durable {seen.time - since:.0f}s "
            f"after it started from step {resumed.step}, {trained:.0f}s of it training")
    if cost < 0:
        return RestartReading(None, None, f"{what}: a negative cost (a clock jump or a "
                              "step time that does not hold): ignored")
    if cost > MAX_RESTART_SECONDS:
        return RestartReading(None, None, f"{what}: {cost:.0f}s is beyond "
                              f"{MAX_RESTART_SECONDS:.0f}s (a wait for capacity or a clock "
                              "jump): ignored")
    return RestartReading(None, cost)


def restart_cost(readings: list[float]) -> float | None:
    """The restart cost the rule uses: the largest of the newest ``RESTART_READINGS`` readings
    (one quick restart does not make the rule count on quick restarts; one slow one is
    forgotten after that many more); None before the first."""
    newest = readings[-RESTART_READINGS:]
    return max(newest) if newest else None
