"""``checkpoint.deleteOnJobDeletion``: the job's checkpoints go with the job. Pure decisions.

While the flag is set the job carries the finalizer ``spotrun.dev/checkpoint-cleanup``.
When the job is deleted, once no attempt's pod runs any more (a sidecar could still upload),
the operator creates a one-shot pod ``<job>-cleanup-<try>`` running ``spotrun purge`` on the
job's storage: the sidecar's image, the same S3 environment and ``secretKeyRef`` as the
sidecar (the operator itself never reads Secrets), or the same PVC mount. When it Succeeded:
Event, finalizer off, pod deleted. A failed try: Warning Event and another try, up to
``MAX_TRIES``; then the finalizer comes off anyway with a Warning naming what is left.

A cleanup pod the API refuses (Pod Security admission, a quota, an invalid name) is tried
``REFUSED_TRIES`` times, 5 s then 10 s apart (the condition ``PodRefused`` and a Warning Event
each time, the count in ``status.cleanupRefusals``): a refusal rarely heals by itself, and a job
stuck Terminating blocks its namespace. Then the finalizer comes off with a Warning Event
saying the checkpoints were NOT deleted, why, and where they are.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from . import models as m
from . import refusals
from .builders import (
    STORAGE_ENV,
    Job,
    checkpoint_mount,
    checkpoint_volume,
    contract_env,
    hardened,
    pod_manifest,
    trainer_index,
)
from .decisions import parse_ts, set_condition, ts

FINALIZER = "spotrun.dev/checkpoint-cleanup"
LABEL_CLEANUP = "spotrun.dev/cleanup-of"
MAX_TRIES = 3
REFUSED_TRIES = 3
DEADLINE_SECONDS = 600
REASON_DELETED = "CheckpointsDeleted"
REASON_FAILED = "CheckpointCleanupFailed"
REASON_ABANDONED = "CheckpointCleanupAbandoned"


def finalizer_change(wanted: bool, finalizers: list[str]) -> Literal["add", "remove"] | None:
    """Whether the job's own finalizer must be added or removed to match the spec."""
    if wanted and FINALIZER not in finalizers:
        return "add"
    if not wanted and FINALIZER in finalizers:
        return "remove"
    return None


def target(job: Job) -> str:
    """What ``spotrun purge`` empties: the S3 prefix, or the checkpoint path on the PVC."""
    return job.spec.checkpoint.storage.uri or job.spec.checkpoint.path


def pod_name(job: str, attempt: int) -> str:
    return f"{job}-cleanup-{attempt}"


def cleanup_pod(job: Job, attempt: int) -> dict[str, Any]:
    """Try ``attempt`` of the cleanup pod: ``spotrun purge`` with the sidecar's storage access."""
    spec = job.spec
    template = spec.template["spec"]
    trainer = template["containers"][trainer_index(spec)]
    # the storage variables, and the job's identity: purge refuses another job's checkpoints
    purge_env = (*STORAGE_ENV, "SPOTRUN_JOB", "SPOTRUN_NAMESPACE")
    env = [e for e in contract_env(job, 0, "cpu") if e["name"].startswith(purge_env)]
    container: dict[str, Any] = {
        "name": "cleanup",
        "image": spec.checkpoint.sidecarImage or job.sidecar_image or trainer["image"],
        "command": ["spotrun", "purge", target(job)],
        "env": env,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": hardened(),
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": DEADLINE_SECONDS,
        "containers": [container],
    }
    for key in ("serviceAccountName", "imagePullSecrets", "securityContext"):
        if key in template:  # web identity (IRSA), registry access, the files' owner
            pod_spec[key] = copy.deepcopy(template[key])
    if spec.checkpoint.storage.pvc is not None:
        volume = checkpoint_volume(spec)
        pod_spec["volumes"] = [volume]
        container["volumeMounts"] = [checkpoint_mount(job)]  # the job's own sub-path only
    return pod_manifest(
        pod_name(job.name, attempt), job.namespace, {LABEL_CLEANUP: job.name}, pod_spec
    )


@dataclass
class CleanupPlan:
    create: dict[str, Any] | None = None
    delete: list[str] = field(default_factory=list)  # cleanup pods, after the release
    release: bool = False  # take the finalizer off the job
    events: list[tuple[str, str, str]] = field(default_factory=list)
    requeue_after: float | None = None
    status: m.JobStatus | None = None  # the job's status to write (a refusal reported)


def _try_of(pod: dict[str, Any]) -> int:
    tail = pod["metadata"]["name"].rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _why(pod: dict[str, Any]) -> str:
    status = pod.get("status") or {}
    for cs in status.get("containerStatuses") or []:
        done = (cs.get("state") or {}).get("terminated") or {}
        if done:
            text = str(done.get("message") or done.get("reason") or "").strip()
            return f"exit code {done.get('exitCode')}" + (f": {text[-400:]}" if text else "")
    return str(status.get("message") or status.get("reason") or "failed")


def plan_cleanup(
    job: Job,
    attempts_running: bool,
    cleanup_pods: list[dict[str, Any]],
    now: datetime | None = None,
) -> CleanupPlan:
    """What to do for a deleted job that still carries the cleanup finalizer."""
    out = CleanupPlan()
    where = target(job)
    if attempts_running:
        out.requeue_after = 2.0  # the attempt pods were told to stop; their events wake us
        return out
    wait = _refusal_wait(job, now)
    if wait > 0 and not cleanup_pods:
        out.requeue_after = wait  # the API refused the last try: back off
        return out
    pods = sorted(cleanup_pods, key=_try_of)
    names = [p["metadata"]["name"] for p in pods]
    phases = [(p.get("status") or {}).get("phase") for p in pods]
    if "Succeeded" in phases:
        out.release, out.delete = True, names
        out.events.append(("Normal", REASON_DELETED, f"deleted the checkpoints under {where}"))
        return out
    if any(ph not in ("Failed", "Succeeded") for ph in phases):
        out.requeue_after = 5.0  # running; its pod events wake us
        return out
    failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
    if len(failed) >= MAX_TRIES:
        out.release, out.delete = True, names
        out.events.append(
            (
                "Warning",
                REASON_ABANDONED,
                f"{len(failed)} tries to delete the checkpoints failed (last: "
                f"{_why(failed[-1])}); leftover checkpoints remain under {where}",
            )
        )
        return out
    attempt = (_try_of(pods[-1]) if pods else 0) + 1
    out.create = cleanup_pod(job, attempt)
    if failed:
        out.events.append(
            (
                "Warning",
                REASON_FAILED,
                f"{failed[-1]['metadata']['name']} could not delete the checkpoints under "
                f"{where} ({_why(failed[-1])}); try {attempt} of {MAX_TRIES}",
            )
        )
    return out


def _refusal_wait(job: Job, now: datetime | None) -> float:
    """Seconds until the next try after a refused cleanup pod (0: try now)."""
    not_before = parse_ts(job.status.notBefore)
    if now is None or not job.status.cleanupRefusals or not_before is None:
        return 0.0
    return max(0.0, (not_before - now).total_seconds())


def refused(job: Job, pod: str, code: int, answer: dict[str, Any], now: datetime) -> CleanupPlan:
    """The API refused cleanup pod ``pod``: report it and back off, or after
    ``REFUSED_TRIES`` refusals let the job go, saying that its checkpoints stay."""
    out = CleanupPlan(status=job.status.model_copy(deep=True))
    st = out.status
    assert st is not None
    st.cleanupRefusals += 1
    why = refusals.explain(pod, job.namespace, code, answer)
    if st.cleanupRefusals >= REFUSED_TRIES:
        out.release = True
        out.events.append(
            (
                "Warning",
                REASON_ABANDONED,
                f"the checkpoints under {target(job)} were NOT deleted: {why} "
                f"({st.cleanupRefusals} tries). The job goes without them; delete them "
                f"yourself (spotrun purge {target(job)}) if you no longer need them",
            )
        )
        return out
    wait = refusals.backoff(st.cleanupRefusals)
    st.notBefore = ts(now + timedelta(seconds=wait))
    message = f"{why}. Try {st.cleanupRefusals} of {REFUSED_TRIES}; the next in {wait:.0f} s"
    set_condition(st, m.COND_POD_REFUSED, True, m.REASON_POD_REFUSED, message, now, job.generation)
    out.events.append(("Warning", m.REASON_POD_REFUSED, message))
    out.requeue_after = wait
    return out
