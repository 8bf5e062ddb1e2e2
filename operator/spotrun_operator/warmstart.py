"""Warm start: the next attempt's pod is created when the platform starts taking the current
one with notice, not after it ended (docs/warm-start.md). Pure decisions on a ``Planner``.

``notice(pod, node)``: the pod has not ended and the platform is taking it: it is being
deleted (``deletionTimestamp``) with condition DisruptionTarget=True (Eviction API: drain,
Karpenter, NTH, cluster-autoscaler; the taint manager; scheduler preemption), or the kubelet
terminates it (DisruptionTarget TerminationByKubelet: graceful node shutdown, node-pressure
eviction; no delete, its grace is the pod's), or it is being deleted while its node carries
an interruption taint (the operator's own delete on that taint, so the trainer
has the whole grace period, counts: the platform gave the notice). A delete the operator
makes for other reasons (suspend, pendingTimeoutSeconds, activeDeadlineSeconds) is not a
notice: suspend is checked here; the others never leave a running pod that is not ended.

``begin``: records the preemption at once (counted once, as an end would be), remembers the
old attempt in ``status.draining`` (its pod keeps the ``spotrun.dev/outcome`` finalizer) and
creates the next attempt's pod in the same pass (no backoff: it goes to other capacity; the
tainted or draining node repels it). The new pod's sidecar learns which attempt still saves
and until when (``SPOTRUN_PREVIOUS_ATTEMPT``/``_UNTIL``, builders) and restores after it.

``fold``: each draining attempt's end, when it comes, is folded in once: its final checkpoint
(the sidecar's termination message: step, finalSaved) moves ``lastCheckpoint`` on (never
back), its pod seconds are added, an Event says it, and only then is its finalizer released.
A draining pod that vanished, or has not ended ``LOST_AFTER_SECONDS`` past its
deletionTimestamp (a node that went silent), is dropped with a Warning: its end is lost. An
old attempt whose script ran to its end during the notice (phase Succeeded, trainer exit 0,
its last checkpoint written by ``close()``: reason ``final``) ends the job Succeeded; the new
attempt's pod is deleted.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from spotrun import contract

from . import deadlineplan, zones
from . import models as m
from . import reasons as r
from .attempts import start_attempt
from .builders import LABEL_CAPACITY, SIDECAR, pod_name
from .endings import Ended, Outcome
from .outcomes import record, saved_text, savings
from .plan import Planner
from .podstate import (
    Obj,
    condition,
    container_status,
    has_condition,
    interruption_taint,
    parse_ts,
    run_seconds,
    terminated,
    ts,
)
from .reports import observe_checkpoint, sidecar_report

LOST_AFTER_SECONDS = 60.0  # past the deletionTimestamp: the kubelet would have said by now


def wanted(spec: m.JobSpec) -> bool:
    """spec.spot.warmStart, for jobs on S3: on a claim both pods would share one folder (the
    new trainer could restore before the old one's final save lands, and both would write)."""
    return spec.spot.warmStart and spec.checkpoint.storage.uri is not None


def notice(pod: Obj, node: Obj | None, suspended: bool) -> str | None:
    """Why the platform is taking ``pod`` with notice (module docstring); None otherwise."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    deleting = bool(meta.get("deletionTimestamp"))
    if suspended or status.get("phase") in ("Succeeded", "Failed"):
        return None
    if has_condition(pod, r.POD_DISRUPTION_TARGET):
        reason = (condition(pod, r.POD_DISRUPTION_TARGET) or {}).get("reason")
        # the kubelet (graceful node shutdown, node-pressure eviction) ends the pod without a
        # delete; any other DisruptionTarget goes with one (a condition alone may be stale)
        if deleting or reason == r.BY_KUBELET:
            return f"{r.POD_DISRUPTION_TARGET} {reason}" if reason else r.POD_DISRUPTION_TARGET
    name = (pod.get("spec") or {}).get("nodeName")
    taint = interruption_taint(node)
    return f"node {name} tainted {taint}" if deleting and name and taint else None


def deadline(pod: Obj, now: datetime) -> datetime:
    """When the pod's grace period ends: its deletionTimestamp; for the kubelet's own
    termination (no delete) the DisruptionTarget's time (else now) plus the pod's grace."""
    meta = pod.get("metadata") or {}
    deleted = parse_ts(meta.get("deletionTimestamp"))
    if deleted is not None:
        return deleted
    since = parse_ts((condition(pod, r.POD_DISRUPTION_TARGET) or {}).get("lastTransitionTime"))
    grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    seconds = grace if isinstance(grace, int) and not isinstance(grace, bool) else 30
    return (since or now) + timedelta(seconds=max(seconds, 0))


def begin(p: Planner, pod: Obj, why: str, gpus_available: bool) -> None:
    """Attempt ``p.st.attempt`` is preempted with notice: record it, create the next pod."""
    st = p.st
    meta = pod["metadata"]
    old, until = st.attempt, ts(deadline(pod, p.now))
    capacity = (meta.get("labels") or {}).get(LABEL_CAPACITY, "spot")
    record(p, Ended(Outcome.PREEMPTED, f"{why}; it saves until {until}"), capacity)
    zones.reclaimed(p, old)
    entry = m.DrainingAttempt(attempt=old, pod=meta["name"], until=until)
    st.draining = [*(st.draining or []), entry]
    if st.phase in ("Succeeded", "Failed"):  # maxPreemptions: its end is still folded in
        return
    st.notBefore = None
    p.plan.requeue_after = None
    p.event(
        m.REASON_WARM_START,
        f"attempt {st.attempt} ({pod_name(p.job.name, st.attempt)}) starts now, while "
        f"attempt {old} ({meta['name']}) saves (until {until}); its sidecar restores after "
        "that attempt's final save",
    )
    start_attempt(p, gpus_available)


def draining_names(p: Planner) -> set[str]:
    return {d.pod for d in p.st.draining or []}


def fold(p: Planner, pods: list[Obj], trainer_name: str) -> None:
    """Fold in the ends of the draining attempts that have ended (module docstring)."""
    by_name = {x["metadata"]["name"]: x for x in pods}
    keep: list[m.DrainingAttempt] = []
    for entry in p.st.draining or []:
        pod = by_name.get(entry.pod)
        if pod is None:
            _lost(p, entry, "its pod is gone")
        elif (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            _ended(p, entry, pod, trainer_name)
        elif _overdue(p, entry):
            _lost(p, entry, f"its pod has not ended {LOST_AFTER_SECONDS:.0f}s past {entry.until}")
            p.plan.release.append(entry.pod)
        else:
            keep.append(entry)
            _recheck(p, entry)
    p.st.draining = keep or None


def _overdue(p: Planner, entry: m.DrainingAttempt) -> bool:
    until = parse_ts(entry.until)
    return until is not None and p.now >= until + timedelta(seconds=LOST_AFTER_SECONDS)


def _recheck(p: Planner, entry: m.DrainingAttempt) -> None:
    until = parse_ts(entry.until)
    if until is not None:
        left = (until + timedelta(seconds=LOST_AFTER_SECONDS) - p.now).total_seconds()
        p.plan.requeue(max(left, 1.0))


def _lost(p: Planner, entry: m.DrainingAttempt, cause: str) -> None:
    p.event(
        m.REASON_DRAINED,
        f"attempt {entry.attempt} ({entry.pod}), preempted with notice: {cause}, so its end "
        f"is unknown (its final save may or may not have made it); "
        f"{saved_text(p.spec, p.st.lastCheckpoint)}",
        warning=True,
    )


def _ended(p: Planner, entry: m.DrainingAttempt, pod: Obj, trainer_name: str) -> None:
    st = p.st
    report = sidecar_report(pod)
    if report is not None:
        observe_checkpoint(st, *report)
        deadlineplan.inherited(st, report[0])
    trainer = container_status(pod, trainer_name)
    seconds = run_seconds(pod, trainer)
    capacity = (pod["metadata"].get("labels") or {}).get(LABEL_CAPACITY, "spot")
    if capacity == "on-demand":
        st.onDemandSeconds = round(st.onDemandSeconds + seconds, 3)
    else:
        st.spotSeconds = round(st.spotSeconds + seconds, 3)
    savings(st, p.spec)
    ref = report[0] if report is not None else None
    if ref is None:
        said = "its sidecar left no report"
    else:
        made = "made it" if ref.finalSaved else "did not make it"
        said = f"its final save {made} (step {ref.step})"
    p.event(m.REASON_DRAINED, f"attempt {entry.attempt} ({entry.pod}) ended: {said}")
    p.plan.release.append(entry.pod)
    if completed(pod, trainer_name) and st.phase not in ("Succeeded", "Failed"):
        current = pod_name(p.job.name, st.attempt)
        p.finish(
            True,
            m.REASON_COMPLETED,
            f"attempt {entry.attempt} ({entry.pod}) ran to its end during its notice; "
            f"{saved_text(p.spec, st.lastCheckpoint)}; {current} is not needed",
        )
        p.plan.delete.append(current)
        p.plan.release.append(current)


def completed(pod: Obj, trainer_name: str) -> bool:
    """Whether the old attempt's script ran to its end (not stopped by the notice): phase
    Succeeded, the trainer exited 0, and its last checkpoint is close()'s (reason final)."""
    if (pod.get("status") or {}).get("phase") != "Succeeded":
        return False
    if terminated(container_status(pod, trainer_name)).get("exitCode") != 0:
        return False
    sidecar = container_status(pod, SIDECAR, init=True) or {}
    message = terminated(sidecar).get("message")
    report = contract.parse(message) if isinstance(message, str) else None
    return report is not None and report.reason == "final"
