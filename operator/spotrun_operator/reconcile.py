"""One reconcile pass: read the job, its pods and the nodes; plan; apply the plan in order.

Order matters for idempotency: create the pod first (a conflict means it exists), then patch
status with the job's resourceVersion as precondition, and only then release finalizers and
delete pods, so no attempt's end can be lost between two passes, whatever instant the operator
dies at.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from spotrun.contract import SidecarReport

from . import cleanup, decisions, gang, live, overlap, owners, refusals
from . import models as m
from .builders import Job, pod_name
from .kube import Kube, Refused
from .metrics import Metrics
from .models import COND_FAILED, REASON_INVALID, JobSpec, JobStatus, name_problem

log = logging.getLogger("spotrun_operator")


class InvalidJob(Exception):
    """The object cannot be parsed into the model (only possible past the CRD's validation)."""


def parse(body: dict[str, Any], sidecar_image: str | None = None) -> Job:
    """The job as read; ``sidecar_image``: the operator's (injection.py), None when unset."""
    meta = body["metadata"]
    if (problem := name_problem(meta["name"])) is not None:
        raise InvalidJob(f"{meta['namespace']}/{meta['name']}: {problem}")
    try:
        spec = JobSpec.model_validate(body.get("spec") or {})
        status = JobStatus.model_validate(body.get("status") or {})
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'spec'}: {e['msg']}" for e in err.errors()
        )
        raise InvalidJob(f"{meta['namespace']}/{meta['name']}: {problems}") from None
    return Job(
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta["uid"],
        generation=int(meta.get("generation") or 0),
        resource_version=meta["resourceVersion"],
        spec=spec,
        status=status,
        sidecar_image=sidecar_image,
    )


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that turns ``old`` into ``new``: a key ``new`` lacks is set to
    null, in nested objects too (a merge patch keeps what it does not name: a gang's decided
    ``ending`` would outlive its attempt)."""
    out: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            out[key] = merge_patch(before, value)
        else:
            out[key] = value
    return out


def gpus_available(nodes: list[dict[str, Any]], resource: str) -> bool:
    return any(
        str((n.get("status") or {}).get("allocatable", {}).get(resource, "0")) not in ("0", "")
        for n in nodes
    )


def reconcile_once(
    kube: Kube,
    namespace: str,
    name: str,
    metrics: Metrics | None = None,
    reports: live.Reports | None = None,
    sidecar_image: str | None = None,
) -> float | None:
    """Bring one job one step closer to what it should be; returns seconds until a recheck.

    ``reports``: the cache of sidecar reports (without it, no live progress is read);
    ``sidecar_image``: the operator's --sidecar-image (injection.py)."""
    metrics = metrics or Metrics()
    key = (namespace, name)
    seen_at = time.time()
    body = kube.get_job(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        metrics.job_gone(key)
        return _job_going(kube, namespace, name, body, sidecar_image)
    try:
        job = refusals.after_spec_change(parse(body, sidecar_image))
    except InvalidJob as err:
        _mark_invalid(kube, body, str(err))
        return None
    pods = kube.list_pods(namespace, name)
    nodes, gpus = _nodes(kube, job, pods)
    plan = decisions.plan(
        job, pods, nodes, gpus, datetime.now(timezone.utc), live=_live_report(job, pods, reports)
    )
    created_at = _create(kube, body, job, plan)
    new_status = plan.status.model_dump(mode="json", exclude_none=True)
    old_status = body.get("status") or {}
    if new_status != old_status:
        body = kube.patch_status(
            namespace, name, job.resource_version, merge_patch(old_status, new_status)
        )
        metrics.recorded(
            key,
            plan.status.preemptions - job.status.preemptions,
            plan.status.failures - job.status.failures,
            seen_at,
        )
    metrics.job_seen(key, plan.status.phase)
    if created_at is not None and plan.status.attempt > 1:
        metrics.replaced(key, created_at)
    # The status now records the decision: tell about it before anything below can hit a
    # conflict (a later pass sees the decision as made and would not tell again).
    for kind, reason, message in plan.events:
        log.info("%s/%s: %s: %s", namespace, name, reason, message)
        kube.event(body, kind, reason, message)
    for pod in plan.delete:
        log.info("deleting pod %s/%s", namespace, pod)
        kube.delete_pod(namespace, pod)
    for pod in plan.release:
        kube.release_pod(namespace, pod)
    change = cleanup.finalizer_change(
        job.spec.checkpoint.deleteOnJobDeletion, body["metadata"].get("finalizers") or []
    )
    if change is not None:
        kube.set_job_finalizer(body, cleanup.FINALIZER, change == "add")
    if plan.delete_job:
        log.info(
            "%s/%s: ttlSecondsAfterFinished=%s has run out: deleting the job",
            namespace,
            name,
            job.spec.ttlSecondsAfterFinished,
        )
        kube.delete_job(namespace, name, job.uid)
        return None
    return plan.requeue_after


def _create(kube: Kube, body: dict[str, Any], job: Job, plan: decisions.Plan) -> float | None:
    """Create the pod ``plan`` asks for, unless another job keeps overlapping storage (checked
    before a job's first pod only) or the API refuses it: both become the plan's status."""
    now = datetime.now(timezone.utc)
    if overlap.first_pod(job, plan):
        overlap.apply(plan, job, overlap.holder(body, kube.list_jobs()), now)
    if plan.create is None:
        return None
    if plan.service is not None and (conflict := _create_service(kube, job, plan)) is not None:
        status = {"reason": "AlreadyExists", "message": conflict, "details": {"kind": "services"}}
        refusals.refused(plan, job, 409, status, now)  # no pods whose rendezvous must fail
        return None
    made: list[str] = []
    for pod in [plan.create, *plan.create_rest]:  # a gang's rank 0 first
        try:
            created = kube.create_pod(job.namespace, pod)
        except Refused as err:
            log.warning("%s/%s: %s", job.namespace, job.name, err)
            _withdraw(kube, job, made)
            plan.create = pod  # the refused one is named
            refusals.refused(plan, job, err.code, err.status, now)
            return None
        if created:
            made.append(pod["metadata"]["name"])
            log.info("created pod %s/%s", job.namespace, pod["metadata"]["name"])
        elif (conflict := _pod_conflict(kube, job, pod)) is not None:
            log.warning("%s/%s: %s", job.namespace, job.name, conflict)
            _withdraw(kube, job, made)
            plan.create = pod
            refusals.refused(plan, job, 409, {"reason": "AlreadyExists", "message": conflict}, now)
            return None
    refusals.accepted(plan.status, job, now)
    return time.time() if made else None


def _withdraw(kube: Kube, job: Job, names: list[str]) -> None:
    """Delete the pods this pass made of a gang whose next rank cannot be made: they would
    wait for it in vain (holding their nodes until the rendezvous times out), and a retry
    would take them for the new try's own."""
    for name in names:
        log.info("%s/%s: withdrawing pod %s (a later rank was not made)", job.namespace,
                 job.name, name)
        kube.delete_pod(job.namespace, name)


def _pod_conflict(kube: Kube, job: Job, pod: dict[str, Any]) -> str | None:
    """Why the pod a create found in the way (409) is not the job's own; None when it is, or
    when its owner cannot be read (taken as the job's, as before: a retried create)."""
    name = pod["metadata"]["name"]
    try:
        return owners.pod_conflict(kube.get_pod(job.namespace, name), job.name, job.uid)
    except ApiException as err:
        log.warning("%s/%s: pod %s exists; its owner could not be read (%s %s): taken as "
                    "this job's", job.namespace, job.name, name, err.status, err.reason)
        return None


def _create_service(kube: Kube, job: Job, plan: decisions.Plan) -> str | None:
    """A gang's headless Service. One of that name owned by another: returned, and the gang's
    pods are held back (their rendezvous would fail). Refused by the API: said (Warning
    Event); the pods are created anyway and their rendezvous fails, a failure of the attempt."""
    assert plan.service is not None
    name = plan.service["metadata"]["name"]
    try:
        if kube.create_service(job.namespace, plan.service):
            log.info("created service %s/%s", job.namespace, name)
            return None
        try:
            held = kube.get_service(job.namespace, name)
        except ApiException as err:  # e.g. RBAC without services/get (an older install)
            log.warning("%s/%s: service %s exists; its owner could not be read (%s %s): "
                        "taken as this job's", job.namespace, job.name, name, err.status,
                        err.reason)
            return None
        if (conflict := gang.service_conflict(held, job.name, job.uid)) is not None:
            log.warning("%s/%s: %s", job.namespace, job.name, conflict)
        return conflict
    except Refused as err:
        log.warning("%s/%s: service %s: %s", job.namespace, job.name, name, err)
        reason = str(err.status.get("message") or err)[:600]
        plan.tell(
            m.REASON_SERVICE_REFUSED,
            f"headless service {name} refused by the API ({err.code}): {reason}; the gang's "
            f"pods cannot resolve MASTER_ADDR without it: fix the cause (a quota on services, "
            f"an admission policy) or let the operator create services (RBAC)",
            warning=True,
        )
    return None


def _nodes(
    kube: Kube, job: Job, pods: list[dict[str, Any]]
) -> tuple[dict[str, dict[str, Any]], bool]:
    """The nodes a decision needs: the current attempt's node (taints, gone?) and, only for
    jobs that want GPUs or have a deadline, every node (does any offer GPUs? is a spot node
    free?). A pending pod needs no node read."""
    if job.spec.gpu.count > 0 or job.spec.deadline is not None:  # deadline: is spot free?
        every = kube.list_nodes()
        return {n["metadata"]["name"]: n for n in every}, job.spec.gpu.count > 0 and (
            gpus_available(every, job.spec.gpu.resourceName)
        )
    current = _current_names(job)
    out: dict[str, dict[str, Any]] = {}
    for pod in pods:
        node_name = pod.get("spec", {}).get("nodeName")
        if pod["metadata"]["name"] not in current or not node_name or node_name in out:
            continue
        if (node := kube.get_node(node_name)) is not None:
            out[node_name] = node
    return out, False


def _current_names(job: Job) -> set[str]:
    """The current attempt's pod names: the single pod, or every rank of a gang."""
    g = job.status.gang  # what the attempt was made as, whatever spec.nodes says now
    if g is not None and g.attempt == job.status.attempt:
        return set(gang.pod_names(job.name, job.status.attempt, g.nodesWanted))
    return {pod_name(job.name, job.status.attempt)}


def _live_report(
    job: Job, pods: list[dict[str, Any]], reports: live.Reports | None
) -> SidecarReport | None:
    """What the current attempt's sidecar last reported at /status, from the cache that
    ``reports`` refreshes in its own threads: this pass never calls into a pod."""
    current = job.status.activePod or pod_name(job.name, job.status.attempt)  # a gang's rank 0
    pod = next((p for p in pods if p["metadata"]["name"] == current), None)
    url = live.sidecar_url(pod, job.spec.checkpoint.sidecarPort) if pod is not None else None
    if reports is None:
        return None
    if url is None:
        reports.forget((job.namespace, job.name))
        return None
    return reports.get((job.namespace, job.name), url)


def _job_going(
    kube: Kube,
    namespace: str,
    name: str,
    body: dict[str, Any] | None,
    sidecar_image: str | None = None,
) -> float | None:
    """The job is gone or being deleted: stop its pods; delete its checkpoints if it asks."""
    leftovers = kube.list_pods(namespace, name)
    for pod in leftovers:
        kube.delete_pod(namespace, pod["metadata"]["name"])
        kube.release_pod(namespace, pod["metadata"]["name"])
    if body is None or cleanup.FINALIZER not in (body["metadata"].get("finalizers") or []):
        return None
    try:
        job = parse(body, sidecar_image)
    except InvalidJob as err:
        kube.event(body, "Warning", cleanup.REASON_ABANDONED, f"{err}: checkpoints not deleted")
        kube.set_job_finalizer(body, cleanup.FINALIZER, False)
        return None
    running = any(
        (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed") for p in leftovers
    )
    pods = kube.list_labelled_pods(namespace, f"{cleanup.LABEL_CLEANUP}={name}")
    now = datetime.now(timezone.utc)
    todo = cleanup.plan_cleanup(job, running, pods, now)
    try:
        if todo.create is not None and kube.create_pod(namespace, todo.create):
            log.info("created cleanup pod %s/%s", namespace, todo.create["metadata"]["name"])
        elif todo.create is not None:
            todo.events.clear()  # an earlier pass created it and told already
    except Refused as err:
        log.warning("%s/%s: cleanup pod: %s", namespace, name, err)
        refused = str(todo.create["metadata"]["name"]) if todo.create else ""
        todo = cleanup.refused(job, refused, err.code, err.status, now)
    if todo.status is not None:
        status = todo.status.model_dump(mode="json", exclude_none=True)
        body = kube.patch_status(namespace, name, job.resource_version, status)
    for kind, reason, message in todo.events:
        log.info("%s/%s: %s: %s", namespace, name, reason, message)
        kube.event(body, kind, reason, message)
    if todo.release:
        kube.set_job_finalizer(body, cleanup.FINALIZER, False)
    for pod_name_ in todo.delete:
        kube.delete_pod(namespace, pod_name_)
    return todo.requeue_after


def _mark_invalid(kube: Kube, body: dict[str, Any], message: str) -> None:
    status = dict(body.get("status") or {})
    if status.get("phase") == "Failed":
        return
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    status.update(
        phase="Failed",
        conditions=[
            {
                "type": COND_FAILED,
                "status": "True",
                "reason": REASON_INVALID,
                "message": message,
                "lastTransitionTime": now,
                "observedGeneration": int(body["metadata"].get("generation") or 0),
            }
        ],
    )
    kube.patch_status(
        body["metadata"]["namespace"],
        body["metadata"]["name"],
        body["metadata"]["resourceVersion"],
        status,
    )
    kube.event(body, "Warning", REASON_INVALID, message)
