"""The current attempt's pod: create it (after backoff), and watch it run — Running, not
schedulable (pending timeout: on-demand), its node tainted for interruption, its sidecar's
live report (progress, a storage it cannot read)."""

from __future__ import annotations

from dataclasses import replace

from spotrun import contract

from . import deadlineplan, gang, gangstatus, zones
from . import models as m
from .builders import LABEL_CAPACITY, Rank, desired_pod, gang_service, pod_name
from .outcomes import on_claim
from .plan import Planner
from .podstate import Obj, condition, interruption_taint, parse_ts
from .reasons import POD_SCHEDULED
from .reports import checkpoint_report, observe_checkpoint

PROGRESS_SECONDS = 8.0  # a running attempt's sidecar is asked at least this often (resync: 10 s)


def start_attempt(p: Planner, gpus_available: bool) -> None:
    st, spec, job = p.st, p.spec, p.job
    if spec.suspend:
        if st.phase != "Suspended":
            st.phase = "Suspended"
            p.cond(m.COND_SUSPENDED, True, m.REASON_SUSPENDED, "suspended before a pod started")
        return
    not_before = parse_ts(st.notBefore)
    if not_before is not None and p.now < not_before:
        p.plan.requeue_after = (not_before - p.now).total_seconds()
        return
    resumed = st.phase == "Suspended"
    st.attempt = max(st.attempt, 1)
    st.notBefore = None
    deadlineplan.at_start(p)
    on_demand = st.onDemand or not spec.spot.enabled
    ganged = gang.is_gang(spec)  # a gang job's attempt may be a gang of 1 (nodes.min)
    nodes = gang.attempt_nodes(spec, st.gangNodes) if ganged else 1
    st.gangNodes = None
    why = ""
    if ganged:
        name = gangstatus.describe(job.name, st.attempt, nodes)
        why = gangstatus.begin(p, nodes)
    else:
        name = pod_name(job.name, st.attempt)
    prefer = zones.prefer(p, name)
    pods = [
        desired_pod(
            replace(job, status=st),
            st.attempt,
            on_demand=on_demand,
            gpus_available=gpus_available,
            prefer=prefer,
            rank=Rank(r, nodes) if ganged else None,
        )
        for r in range(nodes)
    ]
    p.plan.create, p.plan.create_rest = pods[0], pods[1:]
    if ganged:
        p.plan.service = gang_service(job)
    st.activePod = pods[0]["metadata"]["name"]
    if st.phase not in ("Restarting", "Running") or resumed:
        st.phase = "Pending"
    if resumed:
        p.cond(m.COND_SUSPENDED, False, m.REASON_RESUMED, "resumed")
        p.event(m.REASON_RESUMED, f"resumed as attempt {st.attempt} ({name})")
    if spec.gpu.count > 0 and not gpus_available and spec.gpu.fallback == "cpu":
        p.event(
            m.REASON_CPU_FALLBACK,
            f"no node offers {spec.gpu.resourceName}: attempt "
            f"{st.attempt} runs on CPU (SPOTRUN_DEVICE=cpu)",
        )
    where = "on-demand" if on_demand else "spot"
    if st.lastCheckpoint is not None and st.lastCheckpoint.step is not None:
        p.event(
            m.REASON_RESTORING,
            f"attempt {st.attempt} ({name}) on {where} nodes restores "
            f"from step {st.lastCheckpoint.step}{on_claim(spec)}{_or_newer(st)}",
        )
    elif spec.checkpoint.storage.pvc is not None and st.attempt > 1:
        p.event(
            m.REASON_RESTORING,
            f"attempt {st.attempt} ({name}) on {where} nodes restores from the newest "
            f"checkpoint on PVC {spec.checkpoint.storage.pvc.claimName}, if any",
        )
    else:
        p.event(m.REASON_CREATED, f"attempt {st.attempt} ({name}) created on {where} nodes")
    if ganged:
        p.event(
            m.REASON_GANG,
            f"attempt {st.attempt} is a gang of {nodes} pod(s), one per node, "
            f"{spec.procsPerNode} process(es) each: world size {nodes * spec.procsPerNode} "
            f"({why})",
        )


def _or_newer(st: m.JobStatus) -> str:
    """A warm start: the new sidecar restores the final save of the attempt still saving
    (status.draining), newer than the step known now, once it lands."""
    saving = [d for d in st.draining or [] if d.attempt < st.attempt]
    if not saving:
        return ""
    last = saving[-1]
    return (
        f" or newer: the final save of attempt {last.attempt}, which saves until {last.until}, "
        "once it lands"
    )


def observe_running(p: Planner, pod: Obj, node: Obj | None) -> None:
    spec, out = p.spec, p.plan
    meta, status = pod["metadata"], pod.get("status", {})
    deleting = bool(meta.get("deletionTimestamp"))
    name = meta["name"]
    if spec.suspend:
        if not deleting:
            out.delete.append(name)
            p.event(m.REASON_SUSPENDED, f"suspending: {name} gets SIGTERM and saves")
        return
    taint = interruption_taint(node)
    if taint and not deleting:
        out.delete.append(name)
        p.event(
            m.REASON_INTERRUPTION,
            f"node {pod['spec'].get('nodeName')} has taint {taint}: deleting {name} now so "
            "the trainer has the whole grace period to save",
            warning=True,
        )
    if status.get("phase") == "Running":
        mark_running(p, f"{name} runs on node {pod['spec'].get('nodeName')}")
        if not taint:
            capacity = (meta.get("labels") or {}).get(LABEL_CAPACITY)
            deadlineplan.while_running(p, pod, "on-demand" if capacity == "on-demand" else "spot")
        return
    scheduled = condition(pod, POD_SCHEDULED)
    if scheduled and scheduled.get("status") == "False":
        p.cond(
            m.COND_RUNNING,
            False,
            m.REASON_UNSCHEDULABLE,
            f"{name} cannot be scheduled: {scheduled.get('message', '')}",
        )
        if deleting or not deadlineplan.while_pending(p, pod):
            _pending_timeout(p, pod, deleting)


def mark_running(p: Planner, message: str) -> None:
    """The attempt runs (all its pods): phase Running, condition Running, not Preempted."""
    st = p.st
    if st.phase != "Running":
        st.phase = "Running"
    p.cond(m.COND_RUNNING, True, m.REASON_STARTED, message)
    if any(c.type == m.COND_PREEMPTED for c in st.conditions):
        p.cond(m.COND_PREEMPTED, False, m.REASON_STARTED, "")


def _pending_timeout(p: Planner, pod: Obj, deleting: bool) -> None:
    """spot.pendingTimeoutSeconds: a spot pod unschedulable that long moves to on-demand."""
    st, spec, out = p.st, p.spec, p.plan
    name = pod["metadata"]["name"]
    timeout = spec.spot.pendingTimeoutSeconds
    created = parse_ts(pod["metadata"].get("creationTimestamp"))
    if timeout is None or created is None or not spec.spot.enabled or st.onDemand or deleting:
        return
    waited = (p.now - created).total_seconds()
    if waited >= timeout:
        st.onDemand = True
        said = (
            f"{name} pending {waited:.0f}s for spot "
            f"capacity: attempt {st.attempt + 1} runs on on-demand nodes"
        )
        p.event(m.REASON_PENDING_TIMEOUT, said)
        deadlineplan.placed_by_spot_rules(p, st.attempt + 1, f"spot.pendingTimeoutSeconds: {said}")
        out.delete.append(name)
        p.advance(0)
    else:
        out.requeue_after = timeout - waited


def observe_live(p: Planner, pod: Obj, live: contract.SidecarReport | None) -> None:
    """What the attempt's sidecar last reported (read off the reconcile threads by
    ``live.Reports``, parsed strictly): progress moves on, and a sidecar that cannot read the
    storage is said (condition + one Warning Event), until it can again."""
    phase = pod.get("status", {}).get("phase")
    if live is None or p.spec.suspend or phase not in ("Running", "Pending"):
        return
    if (report := checkpoint_report(live)) is not None:
        observe_checkpoint(p.st, *report)
        if p.spec.deadline is not None:
            deadlineplan.measure_step_time(p, pod)
    _storage_condition(p, pod["metadata"]["name"], live)
    p.plan.requeue(PROGRESS_SECONDS)


def _storage_condition(p: Planner, name: str, live: contract.SidecarReport) -> None:
    old = next((c for c in p.st.conditions if c.type == m.COND_STORAGE), None)
    if live.state == "waiting-for-storage":
        message = storage_message(p.spec, p.st.lastCheckpoint, name, live.problem)
        p.cond(m.COND_STORAGE, False, m.REASON_STORAGE_UNREACHABLE, message)
        if old is None or old.status != "False":
            p.event(m.REASON_STORAGE_UNREACHABLE, message, warning=True)
    elif old is not None and old.status != "True" and live.state is not None:
        p.cond(m.COND_STORAGE, True, m.REASON_STORAGE_REACHABLE, f"{name} reads the storage")
        p.event(m.REASON_STORAGE_REACHABLE, f"{name} reads the storage again")


def storage_message(
    spec: m.JobSpec, saved: m.CheckpointRef | None, name: str, problem: str | None
) -> str:
    """Why the attempt waits and what to do: the storage, the sidecar's cause, the fixes."""
    storage = spec.checkpoint.storage
    where = storage.uri or "the checkpoint volume"
    if storage.endpoint:
        where += f" at {storage.endpoint}"
    since = f", since step {saved.step} was saved" if saved and saved.step is not None else ""
    secret = f" and the keys in Secret {storage.secretRef.name}" if storage.secretRef else ""
    return (
        f"{name} cannot read the checkpoints in {where}: {problem or 'no answer'}; it waits "
        f"(with backoff) instead of training from scratch{since}. Fix: make "
        f"the storage reachable from the pod (check spec.checkpoint.storage{secret}); or, to "
        f"start from scratch, set {contract.START_WITHOUT_STORAGE_ENV}=1 in the template."
    )
