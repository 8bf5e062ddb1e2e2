"""First-order goodput of a spot job from measured costs and a capacity trace (pure).

The trace says when spot capacity exists; the job's timeline follows from it:

- a **segment** is one node's life: from capacity coming back (or, with ``move``, from the
  notice of the node reclaimed in another zone: the warm start's next pod starts then) to its
  reclaim at a tick where its zone has no capacity (or the trace's end). The node is paid for
  the whole segment.
- in a segment, training begins after ``provision_seconds`` (node ready) and
  ``resume_seconds`` (pod start, restore, first step), and not before the previous node's
  final save is durable; periodic saves take ``save_seconds`` every ``interval_steps``.
- a reclaim is announced ``notice_seconds`` before it (SIGTERM). Saving at once stops
  training there; using the notice trains on until ``save + upload + reserve`` seconds are
  left (the trainer's rule, trainer/spotrun/notice.py). A final save that does not fit the
  notice loses the steps since the last periodic checkpoint (half an interval on average).

Paid goodput = useful training seconds / paid node seconds; wall-clock goodput = useful /
elapsed; cost against all on-demand = spot price ratio x paid seconds / useful seconds (an
on-demand node does the same work in its useful seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from goodput.trace import Trace

POLICIES = ("stay", "move")  # wait for the reclaimed zone | move to a zone with capacity


@dataclass(frozen=True)
class Costs:
    """Measured costs, in seconds of wall time."""

    step_seconds: float
    interval_steps: int
    save_seconds: float
    upload_seconds: float
    resume_seconds: float
    provision_seconds: float
    notice_seconds: float
    reserve_seconds: float = 4.0
    use_notice: bool = True
    spot_price_ratio: float = 0.3

    def __post_init__(self) -> None:
        if self.step_seconds <= 0 or self.interval_steps < 1:
            raise ValueError("step_seconds must be > 0 and interval_steps >= 1")
        for name in ("save_seconds", "upload_seconds", "resume_seconds", "provision_seconds",
                     "notice_seconds", "reserve_seconds", "spot_price_ratio"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} is {getattr(self, name)!r}: give a number >= 0")

    @property
    def final_save_fits(self) -> bool:
        return self.save_seconds + self.upload_seconds <= self.notice_seconds

    @property
    def trained_into_notice(self) -> float:
        """Seconds of the notice spent training before the final save."""
        if not self.use_notice:
            return 0.0
        spare = self.save_seconds + self.upload_seconds + self.reserve_seconds
        return max(0.0, self.notice_seconds - spare)


@dataclass(frozen=True)
class Segment:
    start: float  # paid from here (s)
    end: float  # reclaimed (or the trace ended) here
    reclaimed: bool
    handoff: bool  # began at the notice of the previous segment's node (another zone)


@dataclass(frozen=True)
class Seconds:
    """Useful training, paid node and elapsed seconds, and the goodputs they give."""

    useful_seconds: float
    paid_seconds: float
    elapsed_seconds: float

    @property
    def paid(self) -> float:
        return self.useful_seconds / self.paid_seconds if self.paid_seconds else 0.0

    @property
    def wall(self) -> float:
        return self.useful_seconds / self.elapsed_seconds if self.elapsed_seconds else 0.0


@dataclass(frozen=True)
class Goodput(Seconds):
    steps: float
    steps_lost: float
    restarts: int
    preemptions: int
    spot_price_ratio: float

    @property
    def cost_vs_on_demand(self) -> float:
        """What the spot run cost per useful hour, as a fraction of on-demand's."""
        if not self.useful_seconds:
            return float("inf")
        return self.spot_price_ratio * self.paid_seconds / self.useful_seconds


def compress(trace: Trace, scale: float) -> Trace:
    """The trace played ``scale`` times faster (a tick of g seconds lasts g/scale)."""
    if scale <= 0:
        raise ValueError(f"scale is {scale!r}: give a positive speed-up")
    return replace(trace, gap_seconds=trace.gap_seconds / scale)


def segments(trace: Trace, policy: str = "stay", notice: float = 0.0) -> list[Segment]:
    """The job's node lives on ``trace``. ``stay``: the job waits for its first zone;
    ``move``: at a reclaim it moves at once to another zone with capacity (its node starts
    at the notice, ``notice`` seconds before the reclaim), else to the first zone back."""
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r}: use one of {POLICIES}")
    gap = trace.gap_seconds
    homes = range(len(trace.zones)) if policy == "move" else range(1)
    out: list[Segment] = []
    zone: int | None = None
    start, handoff = 0.0, False
    for tick in range(trace.ticks):
        now = tick * gap
        if zone is not None and not trace.up(zone, tick):
            out.append(Segment(start, now, True, handoff))
            others = [z for z in homes if z != zone and trace.up(z, tick)]
            zone = others[0] if others else None
            start, handoff = max(now - notice, out[-1].start), True
        if zone is None:
            zone = next((z for z in homes if trace.up(z, tick)), None)
            start, handoff = now, False
    if zone is not None:
        out.append(Segment(start, trace.seconds, False, handoff))
    return out


def goodput(trace: Trace, costs: Costs, policy: str = "stay") -> Goodput:
    """Paid and wall-clock goodput of a job on ``trace`` (its ticks in wall seconds)."""
    segs = segments(trace, policy, costs.notice_seconds)
    period = costs.interval_steps * costs.step_seconds
    train_share = period / (period + costs.save_seconds)
    useful = paid = lost = 0.0
    durable_at = 0.0  # when the previous node's final save is in storage
    for seg in segs:
        paid += seg.end - seg.start
        begin = seg.start + costs.provision_seconds + costs.resume_seconds
        if seg.handoff:
            begin = max(begin, durable_at)
        end = seg.end
        if seg.reclaimed:
            end = seg.end - costs.notice_seconds + costs.trained_into_notice
            durable_at = end + costs.save_seconds + costs.upload_seconds
        trained = max(0.0, end - begin) * train_share
        if seg.reclaimed and trained > 0 and not costs.final_save_fits:
            redo = min(trained, period / 2)
            trained -= redo
            lost += redo / costs.step_seconds
        useful += trained
    preemptions = sum(s.reclaimed for s in segs)
    return Goodput(useful, paid, trace.seconds, useful / costs.step_seconds, lost,
                   max(0, len(segs) - 1), preemptions, costs.spot_price_ratio)
