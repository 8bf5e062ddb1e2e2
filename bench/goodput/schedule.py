"""What the replay does to the cluster, and when, for a trace (pure).

Single zone: a spot node is added when capacity comes back; the node is preempted
``notice`` seconds before the tick where capacity goes (the interruption notice: taint, the
warm start's SIGTERM, eviction), so the cloud takes it back at that tick.
"""

from __future__ import annotations

from dataclasses import dataclass

from goodput.calculator import segments
from goodput.trace import Trace


@dataclass(frozen=True)
class Action:
    at: float  # seconds from the replay's start
    kind: str  # "add" | "preempt"
    notice: float = 0.0  # preempt: seconds until the node is taken back


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    reclaims: tuple[float, ...]  # when each node's bill ends (the cloud takes it back)


def plan(trace: Trace, notice: float) -> Plan:
    """The node actions of a single-zone ``trace`` (its ticks in wall seconds)."""
    if len(trace.zones) != 1:
        raise ValueError(
            f"the replay plays one zone; this trace has {len(trace.zones)} "
            f"({', '.join(n for n, _ in trace.zones)}): give one zone's file (the calculator "
            "takes multi-zone traces: --policy stay|move)")
    actions: list[Action] = []
    reclaims: list[float] = []
    for seg in segments(trace, "stay"):
        actions.append(Action(seg.start, "add"))
        if seg.reclaimed:
            at = max(seg.start, seg.end - notice)
            actions.append(Action(at, "preempt", seg.end - at))
            reclaims.append(seg.end)
    return Plan(tuple(actions), tuple(reclaims))


@dataclass(frozen=True)
class ZoneAction:
    at: float
    kind: str  # "add" | "preempt"
    zone: str
    notice: float = 0.0


def zone_plan(trace: Trace, notice: float) -> tuple[ZoneAction, ...]:
    """Multi-zone: each zone's node count follows its series (a rise adds nodes there, a fall
    preempts as many, each ``notice`` seconds before the tick, never before that zone's last
    add); in time order, a preemption before an add at the same instant."""
    out: list[ZoneAction] = []
    for zone, counts in trace.zones:
        prev, last_add = 0, 0.0
        for tick, count in enumerate(counts):
            now = tick * trace.gap_seconds
            if count > prev:
                out += [ZoneAction(now, "add", zone)] * (count - prev)
                last_add = now
            elif count < prev:
                at = max(last_add, now - notice)
                out += [ZoneAction(at, "preempt", zone, now - at)] * (prev - count)
            prev = count
    return tuple(sorted(out, key=lambda a: (a.at, a.kind == "add")))


Opening = tuple[tuple[ZoneAction, ...], tuple[ZoneAction, ...], tuple[ZoneAction, ...]]


def opening(actions: tuple[ZoneAction, ...]) -> Opening:
    """The zone replay's start, so that the jobs' first pods land in the zone reclaimed first
    (the scheduler's pick among identical free nodes is random): ``(first, joining, rest)``:
    ``first`` the adds at 0 s in that zone (made before the jobs), ``joining`` the other zones'
    adds at 0 s (made once every job's first pod is bound), ``rest`` the plan after them."""
    reclaimed = next((a.zone for a in actions if a.kind == "preempt"), None)
    if reclaimed is None:
        raise ValueError("the zone replay needs a trace in which some zone is reclaimed; "
                         "this one never loses a node: use a trace with a reclaim")
    start = tuple(a for a in actions if a.at == 0 and a.kind == "add")
    first = tuple(a for a in start if a.zone == reclaimed)
    if not first:
        raise ValueError(f"zone {reclaimed} is reclaimed first but has no node at the start, "
                         "so the jobs cannot start there: use a trace where it is up at tick 0")
    joining = tuple(a for a in start if a.zone != reclaimed)
    rest = tuple(a for a in actions if not (a.at == 0 and a.kind == "add"))
    return first, joining, rest
