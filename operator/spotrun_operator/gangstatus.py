"""What ``status`` says of a gang: ``status.gang`` (the current attempt's pods, nodes wanted
and running, world size, how it ends) and ``status.gangHistory`` (each attempt's world size
and end). Pure: it edits the status a ``Planner`` holds."""

from __future__ import annotations

from . import gang
from . import models as m
from .plan import Planner
from .podstate import Obj

SHOWN_NAMES = 4  # an Event names this many pods of a gang, then "..."


def describe(job: str, attempt: int, nodes: int) -> str:
    """``j-2-0, j-2-1`` (or ``j-2-0 .. j-2-15, 16 pods``): the pods of a gang attempt."""
    names = gang.pod_names(job, attempt, nodes)
    if nodes <= SHOWN_NAMES:
        return ", ".join(names)
    return f"{names[0]} .. {names[-1]}, {nodes} pods"


def sized(most: int, nodes: int, last: m.GangAttempt | None) -> str:
    """Why an attempt has ``nodes`` pods (``most``: spec.nodes.max; ``last``: the attempt
    before, if it was a gang)."""
    if nodes < most:
        where = f" of attempt {last.attempt}" if last is not None else ""
        return (
            f"{nodes} of spec.nodes.max {most}: only {nodes} pod(s){where} could be scheduled"
        )
    if last is not None and last.nodes < nodes:
        return f"spec.nodes.max {most}: grown back from {last.nodes} (attempt {last.attempt})"
    return f"spec.nodes.max {most}"


def begin(p: Planner, nodes: int) -> str:
    """Attempt ``p.st.attempt`` is created as a gang of ``nodes`` pods; returns why that many
    (``sized``)."""
    st, job = p.st, p.job
    world = nodes * p.spec.procsPerNode
    earlier = [h for h in st.gangHistory or [] if h.attempt < st.attempt]
    why = sized(p.spec.nodes.max, nodes, earlier[-1] if earlier else None)
    st.gang = m.GangStatus(
        attempt=st.attempt,
        nodes=f"0/{nodes}",
        nodesWanted=nodes,
        nodesRunning=0,
        worldSize=world,
        pods=[
            m.RankPod(rank=r, pod=name)
            for r, name in enumerate(gang.pod_names(job.name, st.attempt, nodes))
        ],
    )
    history = [h for h in st.gangHistory or [] if h.attempt != st.attempt]
    history.append(m.GangAttempt(attempt=st.attempt, nodes=nodes, worldSize=world, why=why))
    st.gangHistory = history[-m.MAX_GANG_HISTORY :]
    return why


def observe(p: Planner, pods: dict[int, Obj | None]) -> int:
    """Each rank's pod, node and phase into ``status.gang``; the number running."""
    g = p.st.gang
    assert g is not None
    running = 0
    for entry in g.pods:
        pod = pods.get(entry.rank)
        if pod is None:
            entry.phase = None
            continue
        entry.node = (pod.get("spec") or {}).get("nodeName") or None
        entry.phase = (pod.get("status") or {}).get("phase") or "Pending"
        if entry.phase == "Running" and not pod["metadata"].get("deletionTimestamp"):
            running += 1
    g.nodesRunning = running
    g.nodes = f"{running}/{g.nodesWanted}"
    return running


def ended(p: Planner, outcome: str, detail: str) -> None:
    """The attempt's end, in its ``status.gangHistory`` entry."""
    for entry in p.st.gangHistory or []:
        if entry.attempt == p.st.attempt:
            entry.outcome, entry.detail = outcome, detail[:1024]
