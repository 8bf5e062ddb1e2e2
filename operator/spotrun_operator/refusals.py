"""When the API refuses a pod the operator creates: pure decisions, no I/O.

A refusal (a 4xx other than a conflict or a throttle: an invalid pod, Pod Security admission,
a quota) cannot be retried away as it is. It becomes the job's condition ``PodRefused``
(naming the job's field to fix, taken from the API's answer) and a Warning Event, and the next
try waits: 5 s, doubling up to 5 min (``status.notBefore``, on the object, so a restarted
operator keeps the pace). A change of the spec (a new generation) is tried at once. The first
pod the API accepts turns the condition False and resets the count.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta
from typing import Any

from . import injection
from . import models as m
from .builders import Job
from .decisions import Plan, set_condition, ts

FIRST_BACKOFF = 5.0
MAX_BACKOFF = 300.0
# Events of a pod about to be created; they are not told when the pod is refused or withheld.
START_REASONS = frozenset(
    {m.REASON_CREATED, m.REASON_RESTORING, m.REASON_RESUMED, m.REASON_CPU_FALLBACK, m.REASON_GANG}
)
MESSAGE_CHARS = 600


def backoff(refusals: int) -> float:
    """Seconds before try ``refusals + 1``: 5, 10, 20 ... 300."""
    return float(min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** max(0, refusals - 1)))


def _operators(name: str, rest: str) -> str | None:
    """The job's field (or the operator's setting) behind an init container the operator adds."""
    if name == m.SIDECAR:
        return f"spec.checkpoint (the sidecar{rest})"
    if name == injection.INIT_CONTAINER:
        return f"{injection.SETTING} (the operator's init container {name}{rest})"
    return None


def _job_field(pod_field: str, init_names: list[str] | None = None) -> str:
    """Where a field of the pod comes from in the job. ``init_names``: the names of the pod's
    init containers as created (the operator's come first, then the template's, in order);
    None: the sidecar alone first."""
    if pod_field.startswith("metadata.labels") or pod_field == "metadata.name":
        return "metadata.name"
    init = re.match(r"spec\.initContainers\[(\d+)\](.*)", pod_field)
    if init:
        index, rest = int(init.group(1)), init.group(2)
        names = [m.SIDECAR] if init_names is None else init_names
        if index < len(names) and (ours := _operators(names[index], rest)) is not None:
            return ours
        added = sum(_operators(n, "") is not None for n in names[:index])
        return f"spec.template.spec.initContainers[{index - added}]{rest}"
    if pod_field.startswith("spec."):
        return f"spec.template.{pod_field}"
    return pod_field


def init_names(pod: dict[str, Any] | None) -> list[str] | None:
    """The names of ``pod``'s init containers (None: no pod to read them from)."""
    if not isinstance(pod, dict) or not isinstance(pod.get("spec"), dict):
        return None
    inits = pod["spec"].get("initContainers")
    return [str(c.get("name")) for c in inits if isinstance(c, dict)] if inits else []


def _fix(namespace: str, status: dict[str, Any], names: list[str] | None) -> str:
    """What to change, from the API's own words."""
    message = str(status.get("message") or "")
    causes = (status.get("details") or {}).get("causes") or []
    fields = [
        str(c["field"]) for c in causes if isinstance(c, dict) and isinstance(c.get("field"), str)
    ]
    if status.get("reason") == "AlreadyExists":  # reconcile: a name taken by another owner
        if (status.get("details") or {}).get("kind") == "services":
            return "delete or rename that Service, or rename this job"
        if "is still being deleted" in message:
            return "none: the next try follows once it is gone"
        return "delete that pod, or give this job a name whose pod names are free"
    if "PodSecurity" in message:
        return (
            f"make spec.template meet the Pod Security level of namespace {namespace} (set what "
            "the message lists, e.g. securityContext.runAsNonRoot, seccompProfile, "
            "allowPrivilegeEscalation: false, capabilities.drop [ALL]) or run the job in a "
            "namespace whose pod-security.kubernetes.io/enforce label allows it"
        )
    if "exceeded quota" in message:
        return (
            "lower the resources of spec.template or raise the ResourceQuota of namespace "
            f"{namespace}"
        )
    if any(f.startswith("metadata.labels") for f in fields) and "63" in message:
        return f"use a job name of at most {m.MAX_JOB_NAME} characters"
    if fields:
        return "correct " + ", ".join(dict.fromkeys(_job_field(f, names) for f in fields))
    return "correct the job's spec.template as the message says"


def explain(
    pod: str,
    namespace: str,
    code: int,
    status: dict[str, Any],
    created: dict[str, Any] | None = None,
) -> str:
    """``pod a-1 refused by the API (422 Invalid): <its message>; fix: <what to change>``;
    ``created``: the pod as it was sent (its init containers name the fields)."""
    text = str(status.get("message") or "")[:MESSAGE_CHARS]
    fix = _fix(namespace, status, init_names(created))
    return f"pod {pod} refused by the API ({code} {status.get('reason', '')}): {text}; fix: {fix}"


def withhold(plan: Plan, until: datetime, max_nodes: int) -> None:
    """The pod the plan would create is not created (yet): the status does not name it, its
    start Events are not told, and the next try comes no earlier than ``until``; a gang made
    smaller than ``max_nodes`` (spec.nodes.max) keeps that size for the next try."""
    plan.create = None
    plan.create_rest = []
    g = plan.status.gang
    if g is not None and g.attempt == plan.status.attempt and g.nodesWanted < max_nodes:
        plan.status.gangNodes = g.nodesWanted  # a shrunk gang: the next try keeps its size
    plan.status.gang = None  # a gang not created is no gang yet
    plan.status.activePod = None
    plan.status.notBefore = ts(until)
    plan.events = [e for e in plan.events if e[1] not in START_REASONS]
    plan.requeue_after = None


def refused(plan: Plan, job: Job, code: int, status: dict[str, Any], now: datetime) -> None:
    """The API refused the pod ``plan`` creates: condition, Warning Event, backoff."""
    created = plan.create  # withhold() takes it off the plan
    pod = str((created or {}).get("metadata", {}).get("name", ""))
    st = plan.status
    st.podRefusals += 1
    wait = backoff(st.podRefusals)
    withhold(plan, now + timedelta(seconds=wait), job.spec.nodes.max)
    plan.requeue(wait)
    message = (
        f"{explain(pod, job.namespace, code, status, created)}. Try {st.podRefusals}; the next in "
        f"{wait:.0f} s, at once when the spec changes"
    )
    set_condition(st, m.COND_POD_REFUSED, True, m.REASON_POD_REFUSED, message, now, job.generation)
    plan.tell(m.REASON_POD_REFUSED, message, warning=True)


def accepted(st: m.JobStatus, job: Job, now: datetime) -> None:
    """The API took the pod: a refusal reported before is over."""
    st.podRefusals = 0
    if any(c.type == m.COND_POD_REFUSED and c.status == "True" for c in st.conditions):
        set_condition(st, m.COND_POD_REFUSED, False, m.REASON_POD_CREATED, "", now, job.generation)


def after_spec_change(job: Job) -> Job:
    """A job held back (refused pod, shared storage) whose spec changed since: try at once."""
    held = [
        c
        for c in job.status.conditions
        if c.type in (m.COND_POD_REFUSED, m.COND_STORAGE_CONFLICT) and c.status == "True"
    ]
    if not held or job.status.notBefore is None:
        return job
    if all(c.observedGeneration >= job.generation for c in held):
        return job
    status = job.status.model_copy(update={"notBefore": None})
    return dataclasses.replace(job, status=status)
