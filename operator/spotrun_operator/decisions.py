"""How the operator decides: pure functions from what it observed to what it should do.

``plan(...)`` compares the job's status with its pods and nodes and returns a ``Plan``: the
next status, at most one pod to create, pods to delete or release, and Events. No I/O here;
``reconcile.py`` applies it. The parts, each a module:

- ``podstate``: reading pods and nodes (conditions, container states, taints, node health);
  ``reports``: what the sidecar says (its checkpoint, the progress text);
- ``endings``: how an attempt's pod ended (``classify_end``), the way kubelets write it;
  ``reasons``: the words Kubernetes writes, in one place;
- ``conditions``: the job's conditions; ``plan``: the ``Plan`` and its typed ``Event``;
- ``outcomes``: recording an end, one function per outcome; ``attempts``: creating and
  watching the current attempt's pod.

Idempotency rests on three facts: attempt N's pod is named ``<job>-N``; a pod carries the
finalizer ``spotrun.dev/outcome`` until the status has recorded how attempt N ended (so its end
is never missed); and status is patched with a resourceVersion precondition.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from . import deadlineplan, gangplan, gangstatus, templates, warmstart, zones
from . import models as m
from .attempts import PROGRESS_SECONDS, observe_live, observe_running, start_attempt
from .attempts import storage_message as storage_message
from .builders import FINALIZER, LABEL_CAPACITY, Job, pod_name, trainer_index
from .conditions import set_condition
from .endings import Ended, Outcome, classify_end
from .outcomes import record
from .outcomes import savings as _savings
from .plan import Event, Plan, Planner
from .podstate import Obj, attempt_of, interruption_taint, parse_ts, ts
from .reports import as_report, checkpoint_report, progress_text, sidecar_checkpoint

UNDECIDED_RECHECK_SECONDS = 5.0  # an ended pod whose kind of end is not settled yet

__all__ = [
    "PROGRESS_SECONDS",
    "Ended",
    "Event",
    "Outcome",
    "Plan",
    "as_report",
    "checkpoint_report",
    "classify_end",
    "interruption_taint",
    "parse_ts",
    "plan",
    "progress_text",
    "set_condition",
    "sidecar_checkpoint",
    "storage_message",
    "ts",
]


def plan(
    job: Job,
    pods: list[dict[str, Any]],
    nodes: dict[str, dict[str, Any]],
    gpus_available: bool,
    now: datetime,
    live: Any = None,
) -> Plan:
    """Everything the operator should do for ``job`` now, given its pods and the nodes.

    ``live`` is what the running attempt's sidecar reports at /status (its newest durable
    checkpoint), when the operator could read it."""
    out = _plan(Planner(job, now), pods, nodes, gpus_available, live)
    templates.stamp(out, job.generation, job.spec.template)
    _expire(out, job.spec, now)
    return out


def _expire(out: Plan, spec: m.JobSpec, now: datetime) -> None:
    """ttlSecondsAfterFinished: a finished job is deleted that long after completionTime."""
    st = out.status
    done = parse_ts(st.completionTime)
    if spec.ttlSecondsAfterFinished is None or st.phase not in ("Succeeded", "Failed") or not done:
        return
    left = (done - now).total_seconds() + spec.ttlSecondsAfterFinished
    if left <= 0:
        out.delete_job = True
    else:
        out.requeue(left)


def _release_old(p: Planner, pods: list[Obj]) -> None:
    """Pods of earlier attempts (or of a finished job): release their finalizer, delete them.
    A warm-started attempt's pod that still saves is left to ``warmstart.fold``."""
    st, out = p.st, p.plan
    draining = warmstart.draining_names(p)
    for old in pods:
        meta = old["metadata"]
        if meta["name"] in draining:
            continue
        if attempt_of(old) >= st.attempt and st.phase not in ("Succeeded", "Failed"):
            continue
        if FINALIZER in (meta.get("finalizers") or []):
            out.release.append(meta["name"])
        over = old.get("status", {}).get("phase") in ("Succeeded", "Failed")
        if not meta.get("deletionTimestamp") and not over:
            out.delete.append(meta["name"])


def _plan(p: Planner, pods: list[Obj], nodes: dict[str, Obj], gpus: bool, live: Any) -> Plan:
    """``plan`` less ttlSecondsAfterFinished; ``p`` holds the job and the time."""
    job, now = p.job, p.now
    st, spec, out = p.st, job.spec, p.plan
    st.observedGeneration = job.generation
    trainer_name = spec.template["spec"]["containers"][trainer_index(spec)]["name"]
    if st.startTime is None:
        st.startTime = ts(now)
    current = pod_name(job.name, st.attempt) if st.attempt else None
    zones.forget_expired(p)
    if spec.deadline is not None:
        p.spot_free = deadlineplan.spot_free(nodes.values(), spec)
    _release_old(p, pods)
    warmstart.fold(p, pods, trainer_name)
    if st.phase in ("Succeeded", "Failed"):
        return out

    if spec.activeDeadlineSeconds is not None:
        started = parse_ts(st.startTime)
        if started and (now - started).total_seconds() > spec.activeDeadlineSeconds:
            p.finish(
                False,
                m.REASON_DEADLINE,
                f"running longer than activeDeadlineSeconds={spec.activeDeadlineSeconds}",
            )
            ours = _attempt_names(p, pods) if gangplan.gang_attempt(p) else [current]
            for name in ours:
                if name and any(x["metadata"]["name"] == name for x in pods):
                    out.delete.append(name)
                    out.release.append(name)
            return out

    if gangplan.gang_attempt(p):
        _plan_gang(p, pods, nodes, gpus, trainer_name, live)
        return out

    by_name = {x["metadata"]["name"]: x for x in pods}
    pod = by_name.get(current) if current else None
    if pod is not None:
        st.activePod = current
        node = nodes.get(pod.get("spec", {}).get("nodeName") or "")
        zones.observe(p, pod, node)
        changed = templates.changed(spec, pod)
        ended = classify_end(
            pod, node, spec.suspend, trainer_name, now=now,
            template_changed=changed or deadlineplan.moving(p),
        )
        why = warmstart.notice(pod, node, spec.suspend) if warmstart.wanted(spec) else None
        if ended is None and why is not None:
            warmstart.begin(p, pod, why, gpus)
            return out
        if ended is not None and ended.outcome is Outcome.SUCCEEDED and st.draining:
            # the job is done once every attempt is: an old one still saving is folded first
            out.requeue(UNDECIDED_RECHECK_SECONDS)
            return out
        if ended is not None:
            capacity = (pod["metadata"].get("labels") or {}).get(LABEL_CAPACITY, "spot")
            _record(p, ended, capacity)
            out.release.append(current or "")
            _savings(st, spec)
            _replace_at_once(p, gpus)
            return out
        if changed and templates.restart(p, pod, gpus):
            return out
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            out.requeue(UNDECIDED_RECHECK_SECONDS)  # ended, not yet told how (endings.py)
        observe_running(p, pod, node)
        observe_live(p, pod, as_report(live))
        return out
    if current is not None and st.activePod == current:
        # The pod vanished without a recorded end (deleted by force): the platform took it.
        _record(
            p,
            Ended(Outcome.SUSPENDED if spec.suspend else Outcome.PREEMPTED, "pod disappeared"),
            "on-demand" if st.onDemand else "spot",
        )
        _replace_at_once(p, gpus)
        return out
    start_attempt(p, gpus)
    return out


def _attempt_names(p: Planner, pods: list[Obj]) -> list[str]:
    return [x["metadata"]["name"] for x in gangplan.attempt_pods(p, pods).values() if x]


def _plan_gang(
    p: Planner, pods: list[Obj], nodes: dict[str, Obj], gpus: bool, trainer: str, live: Any
) -> None:
    """A gang attempt (gangplan.py): start it once every old pod is over; watch it; decide its
    end when the first rank shows it; stop the others; record the end once all are over."""
    st, out = p.st, p.plan
    if not gangplan.created(p):
        if gangplan.old_pods_left(p, pods):
            out.requeue(UNDECIDED_RECHECK_SECONDS)  # the next gang needs the old one's nodes
            return
        start_attempt(p, gpus)
        return
    mine = gangplan.attempt_pods(p, pods)
    g = st.gang
    assert g is not None
    if g.ending is None:
        gangplan.observe(p, mine, nodes)
        if st.attempt != g.attempt:
            return  # the pending timeout moved on to the next attempt
        g.ending = gangplan.decide(p, mine, nodes, trainer)
        if g.ending is not None:
            gangplan.announce(p, g.ending, mine)
    else:
        gangstatus.observe(p, mine)
    lead = mine.get(0)
    if lead is not None:
        zones.observe(p, lead, nodes.get(lead.get("spec", {}).get("nodeName") or ""))
    if g.ending is None:
        if lead is not None:
            observe_live(p, lead, as_report(live))
        if any(gangplan.over(x, p.now) for x in mine.values()):
            out.requeue(UNDECIDED_RECHECK_SECONDS)  # a rank ended: the others are waited for
        return
    gangplan.stop(p, mine)
    if not all(gangplan.over(x, p.now) for x in mine.values()):
        out.requeue(gangplan.RECHECK_SECONDS)
        return
    ended = gangplan.final(g.ending, mine, trainer)
    gangstatus.ended(p, ended.outcome.value, ended.why)
    if g.ending.ranks and (hit := mine.get(g.ending.ranks[0])) is not None:
        st.placement = None  # the place reclaimed is the preempted rank's (zones.py)
        zones.observe(p, hit, nodes.get(hit.get("spec", {}).get("nodeName") or ""))
    _record(p, ended, gangplan.capacity(mine, st.onDemand))
    out.release.extend(x["metadata"]["name"] for x in mine.values() if x is not None)
    _savings(st, p.spec)
    _replace_at_once(p, gpus)


def _record(p: Planner, ended: Ended, capacity: str) -> None:
    """``record`` the current attempt's end; a preemption's place is avoided for a while."""
    attempt = p.st.attempt
    record(p, ended, capacity)
    if ended.outcome is Outcome.PREEMPTED:
        zones.reclaimed(p, attempt)


def _replace_at_once(p: Planner, gpus_available: bool) -> None:
    """Without backoff the next attempt's pod is created by the pass that saw the end (its
    name is fixed, so a repeated pass cannot make a second one)."""
    if p.st.phase == "Restarting" and p.st.notBefore is None:
        start_attempt(p, gpus_available)
