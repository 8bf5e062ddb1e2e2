"""Two jobs may not share checkpoint storage: pure decisions, no I/O.

Jobs whose ``checkpoint.storage.uri`` is the same, or lies under the other's (same endpoint and
bucket; whole path segments: ``s3://b/a`` and ``s3://b/ab`` do not overlap), would restore,
prune and purge each other's checkpoints. The scope is every job in the namespaces this
operator watches; a job that finished or is being deleted holds nothing any more.

Which job keeps the storage: one that has started (a pod was created for it) over one that has
not, else the older (creationTimestamp, then namespace/name). The other gets the condition
``StorageConflict`` naming the holder and the fix, a Warning Event when that begins, and no
pod; it is checked again every ``RECHECK_SECONDS`` and starts once the holder is gone.
The check runs only where a job is about to get its first pod, so a pass costs one list then.
PVC jobs never overlap: each mounts only its own sub-path of the claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from . import models as m
from .builders import Job
from .decisions import Plan, set_condition
from .refusals import withhold

RECHECK_SECONDS = 30.0


@dataclass(frozen=True)
class Place:
    """Where a job keeps its checkpoints, as compared: endpoint, bucket, path segments."""

    endpoint: str
    bucket: str
    segments: tuple[str, ...]


def place(uri: Any, endpoint: Any) -> Place | None:
    """The place of ``s3://bucket/a/b`` on ``endpoint`` (None: not an S3 URI)."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        return None
    bucket, _, path = uri[len("s3://") :].partition("/")
    where = endpoint.rstrip("/").lower() if isinstance(endpoint, str) and endpoint else "aws"
    return Place(where, bucket, tuple(s for s in path.split("/") if s))


def overlap(a: Place, b: Place) -> bool:
    """Whether one place equals the other or lies under it."""
    if (a.endpoint, a.bucket) != (b.endpoint, b.bucket):
        return False
    n = min(len(a.segments), len(b.segments))
    return a.segments[:n] == b.segments[:n]


def _place_of(body: dict[str, Any]) -> Place | None:
    storage = ((body.get("spec") or {}).get("checkpoint") or {}).get("storage") or {}
    return place(storage.get("uri"), storage.get("endpoint"))


def _started(body: dict[str, Any]) -> bool:
    status = body.get("status") or {}
    return bool(status.get("activePod")) or int(status.get("attempt") or 0) >= 2


def _order(body: dict[str, Any]) -> tuple[str, str, str]:
    meta = body.get("metadata") or {}
    return (
        str(meta.get("creationTimestamp") or ""),
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
    )


def _live(body: dict[str, Any]) -> bool:
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    return not meta.get("deletionTimestamp") and status.get("phase") not in ("Succeeded", "Failed")


def holder(me: dict[str, Any], others: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The live job that keeps storage overlapping ``me``'s (a job as the API returns it),
    or None when ``me`` may use its storage."""
    mine = _place_of(me)
    if mine is None:
        return None
    uid = (me.get("metadata") or {}).get("uid")
    keepers = []
    for other in others:
        theirs = _place_of(other)
        if (other.get("metadata") or {}).get("uid") == uid or theirs is None or not _live(other):
            continue
        if overlap(mine, theirs) and (_started(other) or _order(other) < _order(me)):
            keepers.append(other)
    return min(keepers, key=_order) if keepers else None


def key(body: dict[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def apply(plan: Plan, job: Job, other: dict[str, Any] | None, now: datetime) -> None:
    """Hold the job's first pod back while ``other`` keeps overlapping storage; say so once."""
    st = plan.status
    held = next((c for c in st.conditions if c.type == m.COND_STORAGE_CONFLICT), None)
    if other is None:
        if held is not None and held.status == "True":
            message = "no other live job's storage overlaps this job's any more"
            set_condition(
                st,
                m.COND_STORAGE_CONFLICT,
                False,
                m.REASON_STORAGE_FREE,
                message,
                now,
                job.generation,
            )
        return
    theirs = ((other.get("spec") or {}).get("checkpoint") or {}).get("storage") or {}
    message = (
        f"checkpoint.storage.uri {job.spec.checkpoint.storage.uri} overlaps {theirs.get('uri')} "
        f"of job {key(other)}, which keeps it (it started first or is older): the two would "
        "restore, prune and purge each other's checkpoints. No pod until that job is finished "
        "or deleted; or give this job a prefix of its own (neither under nor above the other)"
    )
    if held is None or held.status != "True" or held.message != message:
        plan.tell(m.REASON_STORAGE_OVERLAP, message, warning=True)
    withhold(plan, now + timedelta(seconds=RECHECK_SECONDS), job.spec.nodes.max)
    plan.requeue(RECHECK_SECONDS)
    set_condition(
        st, m.COND_STORAGE_CONFLICT, True, m.REASON_STORAGE_OVERLAP, message, now, job.generation
    )


def first_pod(job: Job, plan: Plan) -> bool:
    """Whether ``plan`` creates the job's first pod (the only time the check runs)."""
    return (
        plan.create is not None
        and job.status.activePod is None
        and job.status.attempt <= 1
        and job.spec.checkpoint.storage.uri is not None
    )
