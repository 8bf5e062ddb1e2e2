"""How the operator decides: pure functions from what it observed to what it should do.

``classify_end(pod, node, suspended)`` tells how an attempt's pod ended; ``plan(...)`` compares
the job's status with its pods and nodes and returns a ``Plan``: the next status, at most one
pod to create, pods to delete or release, and Events. No I/O here; ``reconcile.py`` applies it.

Idempotency rests on three facts: attempt N's pod is named ``<job>-N``; a pod carries the
finalizer ``spotrun.dev/outcome`` until the status has recorded how attempt N ended (so its end
is never missed); and status is patched with a resourceVersion precondition.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from spotrun import contract

from . import models as m
from .builders import FINALIZER, LABEL_ATTEMPT, LABEL_CAPACITY, SIDECAR, Job, desired_pod, pod_name

# Taints that announce a node is about to go (Karpenter, AWS NTH, cluster-autoscaler, GKE).
INTERRUPTION_TAINTS = frozenset(
    {
        "karpenter.sh/disrupted",
        "karpenter.sh/disruption",
        "aws-node-termination-handler/spot-itn",
        "aws-node-termination-handler/asg-lifecycle-termination",
        "aws-node-termination-handler/scheduled-maintenance",
        "aws-node-termination-handler/rebalance-recommendation",
        "ToBeDeletedByClusterAutoscaler",
        "cloud.google.com/impending-node-termination",
        "node.kubernetes.io/out-of-service",
    }
)
PREEMPTION_REASONS = frozenset({"Evicted", "NodeLost", "Shutdown", "Terminated", "NodeShutdown"})
SIGTERM_EXIT = 143
PROGRESS_SECONDS = 8.0  # a running attempt's sidecar is asked at least this often (resync: 10 s)
SIGKILL_EXIT = 137
Pod = dict[str, Any]  # a Pod (or Node) object as the API returns it


class Outcome(enum.Enum):
    SUCCEEDED = "Succeeded"
    PREEMPTED = "Preempted"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


@dataclass(frozen=True)
class Ended:
    outcome: Outcome
    why: str
    exit_code: int | None = None
    message: str = ""
    checkpoint: m.CheckpointRef | None = None
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Plan:
    status: m.JobStatus
    create: dict[str, Any] | None = None
    delete: list[str] = field(default_factory=list)
    release: list[str] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    requeue_after: float | None = None
    ended: Ended | None = None  # the end of an attempt this plan records
    delete_job: bool = False  # ttlSecondsAfterFinished has run out

    def requeue(self, seconds: float) -> None:
        """Recheck no later than ``seconds`` from now."""
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = seconds


def ts(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def parse_ts(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _attempt_of(pod: dict[str, Any]) -> int:
    value = (pod["metadata"].get("labels") or {}).get(LABEL_ATTEMPT, "")
    return int(value) if value.isdigit() else 0


def _status_of(pod: dict[str, Any], name: str, init: bool = False) -> dict[str, Any] | None:
    key = "initContainerStatuses" if init else "containerStatuses"
    for cs in pod.get("status", {}).get(key) or []:
        if cs.get("name") == name:
            return dict(cs)
    return None


def _has_condition(pod: dict[str, Any], kind: str) -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions") or []
    )


def interruption_taint(node: dict[str, Any] | None) -> str | None:
    """The key of an interruption/deletion taint on the node, if it has one."""
    for taint in (node or {}).get("spec", {}).get("taints") or []:
        if taint.get("key") in INTERRUPTION_TAINTS:
            return str(taint["key"])
    return None


def as_report(data: Any) -> contract.SidecarReport | None:
    """What a sidecar said (a parsed report, its raw bytes or text, or decoded JSON) as a
    ``SidecarReport``, by ``contract.parse``'s strict rules; None when it is not one."""
    if data is None or isinstance(data, contract.SidecarReport):
        return data
    if isinstance(data, str | bytes):
        return contract.parse(data)
    if not isinstance(data, dict):
        return None
    try:
        return contract.parse(json.dumps(data))
    except (TypeError, ValueError, RecursionError):  # not JSON-able, too deep
        return None


def checkpoint_report(data: Any) -> tuple[m.CheckpointRef, dict[str, float]] | None:
    """A checkpoint as the sidecar reports it (its /status or its termination message):
    the CheckpointRef and the checkpoint's (finite) metrics; None for anything that is not a
    valid report (``contract.parse``: a step beyond int64, a boolean step...) or has no step."""
    report = as_report(data)
    if report is None or report.step is None:
        return None
    ref = m.CheckpointRef(
        step=report.step,
        epoch=report.epoch,
        uri=report.uri,
        time=report.time,
        finalSaved=report.finalSaved,
    )
    return ref, dict(report.metrics)


def progress_text(step: int | None, epoch: int | None, metrics: dict[str, float]) -> str:
    """``step 450 (epoch 3), loss 0.123``: what `kubectl get rtj` shows as progress."""
    text = f"step {step}" + (f" (epoch {epoch})" if epoch is not None else "")
    names = sorted(metrics, key=lambda k: (k != "loss", k))[:2]
    return ", ".join([text, *(f"{k} {metrics[k]:.4g}" for k in names)])


def sidecar_report(pod: dict[str, Any]) -> tuple[m.CheckpointRef, dict[str, float]] | None:
    """The sidecar's termination message (one line of JSON): its newest durable checkpoint."""
    cs = _status_of(pod, SIDECAR, init=True) or {}
    for state in (cs.get("state") or {}, cs.get("lastState") or {}):
        message = (state.get("terminated") or {}).get("message")
        if message and isinstance(message, str):
            return checkpoint_report(contract.parse(message))
    return None


def sidecar_checkpoint(pod: dict[str, Any]) -> m.CheckpointRef | None:
    """The sidecar's termination message as a CheckpointRef."""
    report = sidecar_report(pod)
    return report[0] if report is not None else None


def observe_checkpoint(st: m.JobStatus, ref: m.CheckpointRef, metrics: dict[str, float]) -> None:
    """A durable checkpoint seen (live /status or an attempt's end) moves the progress on.

    Never backwards; at the same step what is known already (finalSaved, uri) is kept."""
    old = st.lastCheckpoint
    if ref.step is None or (old is not None and (old.step or 0) > ref.step):
        return
    if old is not None and old.step == ref.step:
        ref = m.CheckpointRef(
            step=ref.step,
            epoch=old.epoch if old.epoch is not None else ref.epoch,
            uri=old.uri or ref.uri,
            time=old.time or ref.time,
            finalSaved=ref.finalSaved if ref.finalSaved is not None else old.finalSaved,
        )
    st.lastCheckpoint = ref
    st.progress = progress_text(ref.step, ref.epoch, metrics)


def _run_seconds(pod: dict[str, Any], trainer: dict[str, Any] | None) -> float:
    start = parse_ts(pod.get("status", {}).get("startTime"))
    end = parse_ts(((trainer or {}).get("state") or {}).get("terminated", {}).get("finishedAt"))
    return max(0.0, (end - start).total_seconds()) if start and end else 0.0


def classify_end(
    pod: dict[str, Any], node: dict[str, Any] | None, suspended: bool, trainer_name: str
) -> Ended | None:
    """How the pod of an attempt ended; None while it has not ended.

    A pod the platform ended (DisruptionTarget, eviction, deletion, a node tainted for
    interruption or gone, an exit by SIGTERM) is a preemption even when the trainer saved and
    exited 0; when the job is suspended, that deletion was ours: Suspended. Otherwise exit 0 is
    success and anything else a failure of the user's code.
    """
    phase = pod.get("status", {}).get("phase")
    if phase not in ("Succeeded", "Failed"):
        return None
    trainer = _status_of(pod, trainer_name)
    terminated = ((trainer or {}).get("state") or {}).get("terminated") or {}
    code = terminated.get("exitCode")
    report = sidecar_report(pod)
    checkpoint, metrics = report if report is not None else (None, {})
    seconds = _run_seconds(pod, trainer)
    signs = []
    if _has_condition(pod, "DisruptionTarget"):
        signs.append("DisruptionTarget")
    if pod.get("status", {}).get("reason") in PREEMPTION_REASONS:
        signs.append(str(pod["status"]["reason"]))
    if pod["metadata"].get("deletionTimestamp"):
        signs.append("pod deleted")
    # A node gone or tainted explains an end only where the trainer did not exit on its own.
    if code in (None, SIGTERM_EXIT, SIGKILL_EXIT):
        if node is None and pod.get("spec", {}).get("nodeName"):
            signs.append(f"node {pod['spec']['nodeName']} gone")
        elif taint := interruption_taint(node):
            signs.append(f"node tainted {taint}")
    if code == SIGTERM_EXIT:
        signs.append("exit after SIGTERM")
    if signs and suspended:
        return Ended(Outcome.SUSPENDED, "suspended", code, "", checkpoint, seconds, metrics)
    if signs:
        return Ended(Outcome.PREEMPTED, ", ".join(signs), code, "", checkpoint, seconds, metrics)
    if phase == "Succeeded":
        return Ended(Outcome.SUCCEEDED, "exit 0", 0, "", checkpoint, seconds, metrics)
    message = str(terminated.get("message") or terminated.get("reason") or "").strip()
    return Ended(Outcome.FAILED, f"exit code {code}", code, message, checkpoint, seconds, metrics)


def set_condition(
    status: m.JobStatus,
    kind: str,
    on: bool,
    reason: str,
    message: str,
    now: datetime,
    generation: int,
) -> None:
    value: Literal["True", "False"] = "True" if on else "False"
    for i, c in enumerate(status.conditions):
        if c.type == kind:
            if c.status == value and c.reason == reason and c.message == message:
                if c.observedGeneration != generation:
                    status.conditions[i] = c.model_copy(update={"observedGeneration": generation})
                return
            when = c.lastTransitionTime if c.status == value else ts(now)
            status.conditions[i] = m.Condition(
                type=kind,
                status=value,
                reason=reason,
                message=message,
                lastTransitionTime=when,
                observedGeneration=generation,
            )
            return
    status.conditions.append(
        m.Condition(
            type=kind,
            status=value,
            reason=reason,
            message=message,
            lastTransitionTime=ts(now),
            observedGeneration=generation,
        )
    )


class _Planner:
    def __init__(self, job: Job, now: datetime) -> None:
        self.job = job
        self.spec = job.spec
        self.now = now
        self.plan = Plan(status=job.status.model_copy(deep=True))
        self.st = self.plan.status

    def cond(self, kind: str, on: bool, reason: str, message: str = "") -> None:
        set_condition(self.st, kind, on, reason, message, self.now, self.job.generation)

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.plan.events.append(("Warning" if warning else "Normal", reason, message))

    def finish(self, ok: bool, reason: str, message: str) -> None:
        self.st.phase = "Succeeded" if ok else "Failed"
        self.st.completionTime = ts(self.now)
        self.st.activePod = None
        self.cond(m.COND_SUCCEEDED if ok else m.COND_FAILED, True, reason, message)
        self.cond(m.COND_RUNNING, False, reason, message)
        self.event(reason, message, warning=not ok)

    def advance(self, backoff: float) -> None:
        """Attempt N is over: the next one gets N+1 (its pod is created by a later pass)."""
        self.st.attempt += 1
        self.st.activePod = None
        self.st.notBefore = ts(self.now + timedelta(seconds=backoff)) if backoff > 0 else None
        self.plan.requeue_after = backoff

    def record(self, ended: Ended, capacity: str) -> None:
        st, spec, name = self.st, self.spec, pod_name(self.job.name, self.st.attempt)
        self.plan.ended = ended
        if ended.checkpoint is not None:
            observe_checkpoint(st, ended.checkpoint, ended.metrics)
        if capacity == "on-demand":
            st.onDemandSeconds = round(st.onDemandSeconds + ended.seconds, 3)
        else:
            st.spotSeconds = round(st.spotSeconds + ended.seconds, 3)
        st.lastExitCode = ended.exit_code
        saved = _saved_text(spec, st.lastCheckpoint)
        if ended.checkpoint is not None and ended.outcome is not Outcome.SUCCEEDED:
            saved += (
                " (final save made it)"
                if ended.checkpoint.finalSaved
                else (" (final save did not make it)")
            )
        if ended.outcome is Outcome.SUCCEEDED:
            self.finish(
                True, m.REASON_COMPLETED, f"attempt {st.attempt} ({name}) completed; {saved}"
            )
            return
        if ended.outcome is Outcome.SUSPENDED:
            st.phase = "Suspended"
            self.cond(m.COND_SUSPENDED, True, m.REASON_SUSPENDED, f"suspended; {saved}")
            self.cond(m.COND_RUNNING, False, m.REASON_SUSPENDED, "suspended")
            self.event(m.REASON_SUSPENDED, f"attempt {st.attempt} ({name}) stopped; {saved}")
            self.advance(0)
            return
        if ended.outcome is Outcome.PREEMPTED:
            st.preemptions += 1
            st.consecutivePreemptions += 1
            message = (
                f"attempt {st.attempt} ({name}) preempted ({ended.why}); {saved}; "
                f"preemption {st.preemptions} of at most {spec.spot.maxPreemptions}"
            )
            self.event(m.REASON_PREEMPTED, message, warning=True)
            if st.preemptions > spec.spot.maxPreemptions:
                self.finish(
                    False,
                    m.REASON_MAX_PREEMPTIONS,
                    f"{st.preemptions} preemptions exceed spot.maxPreemptions="
                    f"{spec.spot.maxPreemptions}",
                )
                return
            self.cond(m.COND_PREEMPTED, True, m.REASON_PREEMPTED, message)
            after = spec.spot.fallbackToOnDemandAfter
            if (
                spec.spot.enabled
                and not st.onDemand
                and after is not None
                and st.consecutivePreemptions >= after
            ):
                st.onDemand = True
                self.event(
                    m.REASON_ON_DEMAND,
                    f"{st.consecutivePreemptions} preemptions in a "
                    f"row: attempt {st.attempt + 1} runs on on-demand nodes",
                )
            st.phase = "Restarting"
            self.advance(spec.spot.backoffSeconds)
            return
        st.failures += 1
        st.consecutivePreemptions = 0
        detail = f"attempt {st.attempt} ({name}) failed with {ended.why}"
        if ended.message:
            detail += f": {ended.message[-800:]}"
        if st.failures > spec.backoffLimit:
            self.finish(
                False,
                m.REASON_BACKOFF_LIMIT,
                f"{st.failures} failures exceed backoffLimit={spec.backoffLimit}; last: {detail}",
            )
            return
        self.event(
            m.REASON_FAILED_ATTEMPT,
            f"{detail}; retry {st.failures} of {spec.backoffLimit}",
            warning=True,
        )
        st.phase = "Restarting"
        self.advance(min(60.0, spec.spot.backoffSeconds * 2 ** (st.failures - 1)))


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
    out = _plan(_Planner(job, now), pods, nodes, gpus_available, live)
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


def _plan(p: _Planner, pods: list[Pod], nodes: dict[str, Pod], gpus: bool, live: Any) -> Plan:
    """``plan`` less ttlSecondsAfterFinished; ``p`` holds the job and the time."""
    job, now = p.job, p.now
    st, spec, out = p.st, job.spec, p.plan
    st.observedGeneration = job.generation
    trainer_name = spec.template["spec"]["containers"][_trainer_index(job)]["name"]
    if st.startTime is None:
        st.startTime = ts(now)
    current = pod_name(job.name, st.attempt) if st.attempt else None

    for old in pods:
        meta = old["metadata"]
        if _attempt_of(old) >= st.attempt and st.phase not in ("Succeeded", "Failed"):
            continue
        if FINALIZER in (meta.get("finalizers") or []):
            out.release.append(meta["name"])
        over = old.get("status", {}).get("phase") in ("Succeeded", "Failed")
        if not meta.get("deletionTimestamp") and not over:
            out.delete.append(meta["name"])
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
            if current and any(x["metadata"]["name"] == current for x in pods):
                out.delete.append(current)
                out.release.append(current)
            return out

    by_name = {x["metadata"]["name"]: x for x in pods}
    pod = by_name.get(current) if current else None
    if pod is not None:
        st.activePod = current
        node = nodes.get(pod.get("spec", {}).get("nodeName") or "")
        ended = classify_end(pod, node, spec.suspend, trainer_name)
        if ended is not None:
            capacity = (pod["metadata"].get("labels") or {}).get(LABEL_CAPACITY, "spot")
            p.record(ended, capacity)
            out.release.append(current or "")
            _savings(st, spec)
            _replace_at_once(p, gpus)
            return out
        _observe_running(p, pod, node)
        _observe_live(p, pod, as_report(live))
        return out
    if current is not None and st.activePod == current:
        # The pod vanished without a recorded end (deleted by force): the platform took it.
        p.record(
            Ended(Outcome.SUSPENDED if spec.suspend else Outcome.PREEMPTED, "pod disappeared"),
            "on-demand" if st.onDemand else "spot",
        )
        _replace_at_once(p, gpus)
        return out
    _start_attempt(p, gpus)
    return out


def _replace_at_once(p: _Planner, gpus_available: bool) -> None:
    """Without backoff the next attempt's pod is created by the pass that saw the end (its
    name is fixed, so a repeated pass cannot make a second one)."""
    if p.st.phase == "Restarting" and p.st.notBefore is None:
        _start_attempt(p, gpus_available)


def _trainer_index(job: Job) -> int:
    from .builders import trainer_index

    return trainer_index(job.spec)


def _savings(st: m.JobStatus, spec: m.JobSpec) -> None:
    cost = spec.cost
    if cost.onDemandHourly is None or cost.spotHourly is None:
        return
    total = st.spotSeconds + st.onDemandSeconds
    paid = st.spotSeconds * cost.spotHourly + st.onDemandSeconds * cost.onDemandHourly
    st.estimatedSavings = round((total * cost.onDemandHourly - paid) / 3600, 6)


def _start_attempt(p: _Planner, gpus_available: bool) -> None:
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
    on_demand = st.onDemand or not spec.spot.enabled
    p.plan.create = desired_pod(
        replace(job, status=st), st.attempt, on_demand=on_demand, gpus_available=gpus_available
    )
    name = pod_name(job.name, st.attempt)
    st.activePod = name
    if st.phase not in ("Restarting", "Running") or resumed:
        st.phase = "Pending"
    if resumed:
        p.cond(m.COND_SUSPENDED, False, m.REASON_RESUMED, "resumed")
        p.event(m.REASON_RESUMED, f"resumed as attempt {st.attempt} ({name})")
    if spec.gpu.count > 0 and not gpus_available and spec.gpu.fallback == "cpu":
        p.event(
            "CPUFallback",
            f"no node offers {spec.gpu.resourceName}: attempt "
            f"{st.attempt} runs on CPU (SPOTRUN_DEVICE=cpu)",
        )
    where = "on-demand" if on_demand else "spot"
    if st.lastCheckpoint is not None and st.lastCheckpoint.step is not None:
        p.event(
            m.REASON_RESTORING,
            f"attempt {st.attempt} ({name}) on {where} nodes restores "
            f"from step {st.lastCheckpoint.step}{_on_claim(spec)}",
        )
    elif spec.checkpoint.storage.pvc is not None and st.attempt > 1:
        p.event(
            m.REASON_RESTORING,
            f"attempt {st.attempt} ({name}) on {where} nodes restores from the newest "
            f"checkpoint on PVC {spec.checkpoint.storage.pvc.claimName}, if any",
        )
    else:
        p.event(m.REASON_CREATED, f"attempt {st.attempt} ({name}) created on {where} nodes")


def _on_claim(spec: m.JobSpec) -> str:
    """`` on PVC <claim>`` where the checkpoints are on a claim, else nothing."""
    claim = spec.checkpoint.storage.pvc
    return f" on PVC {claim.claimName}" if claim is not None else ""


def _saved_text(spec: m.JobSpec, ref: m.CheckpointRef | None) -> str:
    """``last checkpoint step 450 on PVC ckpt``: the newest step the sidecar reported. Without
    one on a PVC (a pod that vanished, say) the claim may still hold some: say where they are."""
    if ref is not None and ref.step is not None:
        return f"last checkpoint step {ref.step}{_on_claim(spec)}"
    claim = spec.checkpoint.storage.pvc
    return f"checkpoints on PVC {claim.claimName}" if claim is not None else "no checkpoint yet"


def _observe_running(p: _Planner, pod: dict[str, Any], node: dict[str, Any] | None) -> None:
    st, spec, out = p.st, p.spec, p.plan
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
        if st.phase != "Running":
            st.phase = "Running"
        p.cond(
            m.COND_RUNNING,
            True,
            m.REASON_STARTED,
            f"{name} runs on node {pod['spec'].get('nodeName')}",
        )
        if any(c.type == m.COND_PREEMPTED for c in st.conditions):
            p.cond(m.COND_PREEMPTED, False, m.REASON_STARTED, "")
        return
    scheduled = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None
    )
    if scheduled and scheduled.get("status") == "False":
        p.cond(
            m.COND_RUNNING,
            False,
            m.REASON_UNSCHEDULABLE,
            f"{name} cannot be scheduled: {scheduled.get('message', '')}",
        )
        timeout = spec.spot.pendingTimeoutSeconds
        created = parse_ts(meta.get("creationTimestamp"))
        if (
            timeout is not None
            and created is not None
            and spec.spot.enabled
            and not st.onDemand
            and not deleting
        ):
            waited = (p.now - created).total_seconds()
            if waited >= timeout:
                st.onDemand = True
                p.event(
                    m.REASON_PENDING_TIMEOUT,
                    f"{name} pending {waited:.0f}s for spot "
                    f"capacity: attempt {st.attempt + 1} runs on on-demand nodes",
                )
                out.delete.append(name)
                p.advance(0)
            else:
                out.requeue_after = timeout - waited


def _observe_live(p: _Planner, pod: dict[str, Any], live: contract.SidecarReport | None) -> None:
    """What the attempt's sidecar last reported (read off the reconcile threads by
    ``live.Reports``, parsed strictly): progress moves on, and a sidecar that cannot read the
    storage is said (condition + one Warning Event), until it can again."""
    if (
        live is None
        or p.spec.suspend
        or pod.get("status", {}).get("phase")
        not in (
            "Running",
            "Pending",
        )
    ):
        return
    if (report := checkpoint_report(live)) is not None:
        observe_checkpoint(p.st, *report)
    _storage_condition(p, pod["metadata"]["name"], live)
    p.plan.requeue(PROGRESS_SECONDS)


def _storage_condition(p: _Planner, name: str, live: contract.SidecarReport) -> None:
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
