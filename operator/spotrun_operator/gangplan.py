"""Deciding a gang attempt (``spec.nodes.max > 1``, gang.py): pure, called by ``decisions``.

The attempt counts as started (phase Running, condition Running) only when all its pods run.
Its end is decided once, into ``status.gang.ending``, when the first rank shows it:

- **Preempted**: a pod preempted (``classify_end``), or a pod not ended yet that carries a
  platform sign (deleted, DisruptionTarget) or whose node is gone, unreachable or tainted for
  interruption; the Event and ``status.gang.ending.ranks`` name the rank(s) and node(s).
- **Suspended** (``spec.suspend``), **TemplateChanged** (``spec.template`` edited).
- **Failed**: a pod ended with an error nothing interrupted, counted against
  ``backoffLimit``, decided only ``KILL_SETTLE_SECONDS`` after its exit (a peer whose node
  died makes the others fail with a connection error before that node is seen as gone);
  the rank named is the one that ended first (``first_ended``).
- **Succeeded**: every pod exited 0. A rank that exits 0 while others still run is waited
  for; its exit 0 is NOT success when another rank of the attempt was preempted.

Once decided, the other pods are deleted (their grace period applies: they save too). When
every pod of the attempt is over (ended, gone, or past its deletion deadline) the end is
recorded with the newest checkpoint any rank's sidecar reported and the pods' seconds
summed, and the next attempt starts the whole gang again. An attempt starts only when every
pod of the earlier ones is over.

Fewer nodes (``spec.nodes.min < max``): every attempt asks for ``max`` pods; when only some
of them (at least ``min``) are scheduled for ``nodes.shrinkAfterSeconds``, the attempt ends
as ``Shrunk`` (no preemption, no failure: none of its ranks trained, a gang trains only once
every rank joined) and the next one is a gang of as many pods as were scheduled
(``status.gangNodes``), restoring the checkpoint whatever world size saved it. The attempt
after that asks for ``max`` again. Fewer than ``min`` scheduled: ``spot.pendingTimeoutSeconds``
applies (on-demand), as without ``min``. Warm start is off for gangs: the next gang would need every
node of the old one free, which it is not while the old pods save.
"""

from __future__ import annotations

from datetime import datetime, timezone

from . import gang, gangstatus, templates
from . import models as m
from .attempts import mark_running
from .builders import LABEL_CAPACITY
from .endings import KILL_SETTLE_SECONDS, Ended, Outcome, classify_end, platform_signs
from .plan import Planner
from .podstate import (
    Obj,
    attempt_of,
    condition,
    container_status,
    interruption_taint,
    node_health,
    parse_ts,
    run_seconds,
    terminated,
)
from .reasons import POD_SCHEDULED
from .reports import sidecar_report

RECHECK_SECONDS = 2.0  # a gang whose end is decided: how often its stopping pods are looked at


def gang_attempt(p: Planner) -> bool:
    """Whether the current attempt is (or the next one will be) a gang. An attempt in flight
    stays what it was made as: an edit of spec.nodes applies from the next attempt."""
    st = p.st
    if st.activePod is not None and st.attempt > 0:
        return st.gang is not None and st.gang.attempt == st.attempt
    return gang.is_gang(p.spec)


def attempt_pods(p: Planner, pods: list[Obj]) -> dict[int, Obj | None]:
    """The current attempt's pod of each rank (None: missing)."""
    g = p.st.gang
    nodes = g.nodesWanted if g is not None and g.attempt == p.st.attempt else p.spec.nodes.max
    by_name = {x["metadata"]["name"]: x for x in pods}
    names = gang.pod_names(p.job.name, p.st.attempt, nodes)
    return {rank: by_name.get(name) for rank, name in enumerate(names)}


def created(p: Planner) -> bool:
    """Whether the status records the current attempt's gang as created."""
    g = p.st.gang
    return p.st.attempt > 0 and g is not None and g.attempt == p.st.attempt and (
        p.st.activePod is not None
    )


def over(pod: Obj | None, now: datetime) -> bool:
    """A pod that holds nothing any more: missing, ended, or past its deletion deadline."""
    if pod is None or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return True
    deadline = parse_ts((pod.get("metadata") or {}).get("deletionTimestamp"))
    return deadline is not None and now >= deadline


def old_pods_left(p: Planner, pods: list[Obj]) -> list[str]:
    """Pods of earlier attempts that are not over: the next gang waits for them."""
    return [
        x["metadata"]["name"]
        for x in pods
        if attempt_of(x) < p.st.attempt and not over(x, p.now)
    ]


def _node_of(pod: Obj, nodes: dict[str, Obj]) -> Obj | None:
    return nodes.get((pod.get("spec") or {}).get("nodeName") or "")


def running_signs(pod: Obj, node: Obj | None) -> list[str]:
    """Why a pod that has not ended is being preempted (empty: nothing says so)."""
    signs = platform_signs(pod)
    name = (pod.get("spec") or {}).get("nodeName")
    if name:
        health = node_health(node)
        if health in ("gone", "unreachable"):
            signs.append(f"node {name} {health}")
        elif taint := interruption_taint(node):
            signs.append(f"node {name} tainted {taint}")
    return signs


def _where(rank: int, pod: Obj | None) -> str:
    if pod is None:
        return f"rank {rank}"
    node = (pod.get("spec") or {}).get("nodeName")
    on = f" on node {node}" if node else ""
    return f"rank {rank} ({pod['metadata']['name']}{on})"


def _finished_at(pod: Obj, trainer: str) -> datetime | None:
    text = terminated(container_status(pod, trainer)).get("finishedAt")
    return parse_ts(text) if isinstance(text, str) else None


def first_ended(finished: dict[int, datetime | None]) -> int:
    """The rank that ended first (its trainer's finishedAt; an unknown time counts as last,
    a tie goes to the lower rank): the others' errors are most often its consequence."""
    last = datetime.max.replace(tzinfo=timezone.utc)
    return min(finished, key=lambda r: (finished[r] or last, r))


def fewer_nodes(least: int, wanted: int, placed: int) -> int | None:
    """``spec.nodes.min < max``: the nodes the next attempt runs on when only ``placed`` of
    the ``wanted`` pods could be scheduled: ``placed``, when it is at least ``least``
    (spec.nodes.min) and short of ``wanted``; None: no smaller gang (wait for the whole one,
    or the pending timeout moves it to on-demand)."""
    return placed if least <= placed < wanted else None


def decide(
    p: Planner, pods: dict[int, Obj | None], nodes: dict[str, Obj], trainer: str
) -> m.GangEnding | None:
    """How the attempt ends, as soon as one rank shows it (module docstring); None: not yet."""
    spec, now = p.spec, p.now
    if spec.suspend:
        return m.GangEnding(outcome="Suspended", why="suspended")
    ends: dict[int, Ended] = {}
    preempted: dict[int, str] = {}
    for rank, pod in pods.items():
        if pod is None:
            preempted[rank] = f"{_where(rank, pod)}: pod disappeared"
            continue
        node = _node_of(pod, nodes)
        end = classify_end(pod, node, False, trainer, now=now)
        if end is None:
            if signs := running_signs(pod, node):
                preempted[rank] = f"{_where(rank, pod)}: {', '.join(signs)}"
            continue
        ends[rank] = end
        if end.outcome is Outcome.PREEMPTED:
            preempted[rank] = f"{_where(rank, pod)}: {end.why}"
    if preempted:
        codes = [ends[r].exit_code for r in preempted if r in ends]
        return m.GangEnding(
            outcome="Preempted",
            why="; ".join(preempted.values())[:1024],
            exitCode=next((c for c in codes if c is not None), None),
            ranks=sorted(preempted),
        )
    lead = pods.get(0)
    if lead is not None and templates.changed(spec, lead):
        return m.GangEnding(outcome="TemplateChanged", why="stopped for a changed spec.template")
    failed = {r: e for r, e in ends.items() if e.outcome is Outcome.FAILED}
    if failed:
        rank = first_ended(
            {r: _finished_at(x, trainer) for r in failed if (x := pods[r]) is not None}
        )
        end, pod = failed[rank], pods[rank]
        assert pod is not None
        finished = _finished_at(pod, trainer)
        if finished is not None and (now - finished).total_seconds() < KILL_SETTLE_SECONDS:
            left = KILL_SETTLE_SECONDS - (now - finished).total_seconds()
            p.plan.requeue(max(left, 0.5))
            return None
        return m.GangEnding(
            outcome="Failed",
            why=f"{_where(rank, pod)} failed with {end.why}"[:1024],
            message=end.message[-1024:],
            exitCode=end.exit_code,
            ranks=sorted(failed),
        )
    if len(ends) == len(pods) and all(e.outcome is Outcome.SUCCEEDED for e in ends.values()):
        return m.GangEnding(outcome="Succeeded", why="every rank exited 0", exitCode=0)
    return None


def final(ending: m.GangEnding, pods: dict[int, Obj | None], trainer: str) -> Ended:
    """The attempt's ``Ended``: the decided outcome, the checkpoint rank 0's sidecar reported
    at its end (node 0 alone commits a gang checkpoint; another node's ``finalSaved`` says only
    that its part is uploaded), and the seconds of all its pods (each pod holds a node)."""
    seconds = sum(
        run_seconds(pod, container_status(pod, trainer))
        for pod in pods.values()
        if pod is not None
    )
    lead = pods.get(0)
    report = sidecar_report(lead) if lead is not None else None
    checkpoint, metrics = report if report is not None else (None, {})
    return Ended(
        Outcome(ending.outcome),
        ending.why,
        ending.exitCode,
        ending.message,
        checkpoint,
        seconds,
        metrics,
    )


def capacity(pods: dict[int, Obj | None], on_demand: bool) -> str:
    """spot or on-demand: what the attempt's pods were made for."""
    lead = next((x for x in pods.values() if x is not None), None)
    labels = ((lead or {}).get("metadata") or {}).get("labels") or {}
    return str(labels.get(LABEL_CAPACITY, "on-demand" if on_demand else "spot"))


def stop(p: Planner, pods: dict[int, Obj | None]) -> None:
    """Delete every pod of the attempt that still runs and is not being deleted yet."""
    for pod in pods.values():
        if pod is None or over(pod, p.now) or pod["metadata"].get("deletionTimestamp"):
            continue
        p.plan.delete.append(pod["metadata"]["name"])


def announce(p: Planner, ending: m.GangEnding, pods: dict[int, Obj | None]) -> None:
    """The Event of a decided end that stops the other ranks."""
    if ending.outcome == "Succeeded":
        return
    others = [str(r) for r, x in pods.items() if not over(x, p.now) and r not in ending.ranks]
    saves = "they save too" if ending.outcome != "Failed" else "no save: not without every rank"
    stopping = f"stopping rank(s) {', '.join(others)} gracefully ({saves})" if others else ""
    p.event(
        m.REASON_GANG_STOPPING,
        f"attempt {p.st.attempt}: {ending.outcome.lower()}: {ending.why}"
        + (f"; {stopping}" if stopping else ""),
        warning=ending.outcome in ("Preempted", "Failed"),
    )


def observe(p: Planner, pods: dict[int, Obj | None], nodes: dict[str, Obj]) -> None:
    """Running only when every pod runs; unschedulable pods and the pending timeout. A pod
    on a node that is being reclaimed does not count as placed: the gang does not shrink
    onto it (``decide`` ends the attempt as preempted instead)."""
    g = p.st.gang
    assert g is not None
    running = gangstatus.observe(p, pods)
    if running == g.nodesWanted:
        where = ", ".join(f"{e.rank}: {e.node}" for e in g.pods)
        mark_running(p, f"all {g.nodesWanted} pods run (rank: node): {where}")
        return
    stuck = [
        x for x in pods.values()
        if x is not None and (condition(x, POD_SCHEDULED) or {}).get("status") == "False"
    ]
    if not stuck:
        return
    first = stuck[0]
    message = (condition(first, POD_SCHEDULED) or {}).get("message", "")
    why = f"{first['metadata']['name']}: {message}"
    p.cond(
        m.COND_RUNNING,
        False,
        m.REASON_UNSCHEDULABLE,
        f"{running} of {g.nodesWanted} pods run; {len(stuck)} cannot be scheduled ({why})",
    )
    placed = sum(
        1 for x in pods.values()
        if x is not None and _placed(x) and not running_signs(x, _node_of(x, nodes))
    )
    smaller = fewer_nodes(p.spec.nodes.least, g.nodesWanted, placed)
    if smaller is not None:
        _shrink(p, pods, stuck, smaller, why)
    else:
        _pending_timeout(p, pods, stuck)


def _placed(pod: Obj) -> bool:
    """A pod the scheduler bound to a node, and not being deleted."""
    return bool((pod.get("spec") or {}).get("nodeName")) and not pod["metadata"].get(
        "deletionTimestamp"
    )


def _waited(p: Planner, stuck: list[Obj], timeout: int) -> float | None:
    """Seconds the stuck pods have waited once that is ``timeout`` or more; None before (a
    recheck is planned for then) or when their creation time is unknown."""
    times = [parse_ts(x["metadata"].get("creationTimestamp")) for x in stuck]
    known = [t for t in times if t is not None]
    if not known:
        return None
    waited = (p.now - min(known)).total_seconds()
    if waited < timeout:
        p.plan.requeue(timeout - waited)
        return None
    return waited


def _shrink(
    p: Planner, pods: dict[int, Obj | None], stuck: list[Obj], nodes: int, why: str
) -> None:
    """``spec.nodes.min < max`` and only ``nodes`` pods (>= min) could be scheduled for
    ``nodes.shrinkAfterSeconds``: this attempt's pods are deleted (none has trained: a gang
    trains only once every rank joined) and the next attempt is a gang of ``nodes`` pods."""
    st, spec = p.st, p.spec
    waited = _waited(p, stuck, spec.nodes.shrinkAfterSeconds)
    if waited is None:
        return
    wanted = len(pods)
    st.gangNodes = nodes
    p.event(
        m.REASON_GANG_SHRUNK,
        f"attempt {st.attempt}: only {nodes} of {wanted} pods could be scheduled in "
        f"{waited:.0f}s ({why}): attempt {st.attempt + 1} runs on {nodes} node(s) "
        f"(spec.nodes.min {spec.nodes.least}), world size {nodes * spec.procsPerNode}, from the "
        f"newest checkpoint whatever world size saved it; the next restart asks for "
        f"{spec.nodes.max} again",
        warning=True,
    )
    gangstatus.ended(p, "Shrunk", f"{nodes} of {wanted} pods could be scheduled in {waited:.0f}s")
    stop(p, pods)
    p.advance(0)


def _pending_timeout(p: Planner, pods: dict[int, Obj | None], stuck: list[Obj]) -> None:
    """spot.pendingTimeoutSeconds: a gang not placed that long moves to on-demand nodes, as a
    single pod does: its pods are deleted and the next attempt is a gang on on-demand."""
    st, spec = p.st, p.spec
    timeout = spec.spot.pendingTimeoutSeconds
    if timeout is None or not spec.spot.enabled or st.onDemand:
        return
    waited = _waited(p, stuck, timeout)
    if waited is None:
        return
    st.onDemand = True
    p.event(
        m.REASON_PENDING_TIMEOUT,
        f"attempt {st.attempt}: {len(stuck)} of {len(pods)} pods pending {waited:.0f}s for spot "
        f"capacity: attempt {st.attempt + 1} runs on on-demand nodes",
    )
    gangstatus.ended(p, "PendingTimeout", f"{len(stuck)} pods could not be placed")
    stop(p, pods)
    p.advance(0)
