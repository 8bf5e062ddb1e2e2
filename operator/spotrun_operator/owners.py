"""Whose an object is, read from its ownerReferences: pure, no I/O.

The operator names what it creates deterministically (a job's attempt pods, a gang's Service),
so a retried create meets its own object (409). An object of that name made by someone else
(another job whose names run into these, a user's own pod) must not be taken for the job's."""

from __future__ import annotations

from typing import Any


def foreign_owner(obj: dict[str, Any] | None, uid: str) -> str | None:
    """None when ``obj`` is gone or carries an ownerReference to ``uid``; else who owns it
    (``ResumableTrainingJob other``, or ``no owner``)."""
    if obj is None:
        return None
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    owners = [o for o in owners if isinstance(o, dict)]
    if any(o.get("uid") == uid for o in owners):
        return None
    return ", ".join(f"{o.get('kind')} {o.get('name')}" for o in owners) or "no owner"


def pod_conflict(pod: dict[str, Any] | None, job: str, uid: str) -> str | None:
    """Why the pod a create found in the way is not job ``job``'s (None: it is, or it is gone)."""
    held = foreign_owner(pod, uid)
    if held is None:
        return None
    meta = (pod or {}).get("metadata") or {}
    if meta.get("deletionTimestamp"):  # e.g. the pod of a job deleted and made again
        return f"pod {meta.get('name')} of {held} is still being deleted"
    return (
        f"pod {meta.get('name')} exists and is not job {job}'s (owned by {held}); the job's "
        f"attempt pods are named <job>-<attempt> (a multi-node job's <job>-<attempt>-<rank>)"
    )
