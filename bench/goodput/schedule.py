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
