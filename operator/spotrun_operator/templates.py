"""A changed ``spec.template``: the running attempt saves and the next one runs the new template.

Each attempt's pod carries the hash of the template it was built from
(``spotrun.dev/template-hash``) and the job's generation then (``spotrun.dev/generation``);
``status.templateGeneration`` says the same for the current attempt. A pass compares the pod's
hash with the spec's now (``changed``) and ``action`` decides, purely:

- the pod runs: ``stop`` it the way ``suspend`` does (a graceful delete: the trainer saves on
  SIGTERM, the sidecar uploads); its end, when it comes, is recorded as ``TemplateChanged``
  (``endings.classify_end(template_changed=True)``): neither a preemption nor a failure, and
  the next attempt, built from the new template, starts at once and restores that save;
- the pod has not started (Pending, or no phase yet): ``replace`` it at once (it has nothing to
  save);
- the job is suspended (suspend wins), the pod is already being deleted or has ended, its phase
  is ``Unknown`` (its node is out of touch: its trainer may still be writing the same prefix),
  or the template is unchanged: ``keep``. A suspended or finished job takes the new template when
  (if ever) its next attempt starts.

A pod without the hash annotation (made by an operator before this one) reads as unchanged,
so an upgrade does not restart every running job. Only ``spec.template`` restarts a running
attempt; other spec fields take effect as they always did (at the next attempt or at once).

Limit: the kind of end is read from the hashes when the pod ends. A template edited and then
edited back before the stopped pod has ended leaves a pod that matches the spec again, deleted
by the operator: its end counts as a preemption (the next attempt runs the same template).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from . import models as m
from .attempts import start_attempt
from .builders import LABEL_CAPACITY
from .endings import Ended, Outcome
from .outcomes import record
from .plan import Plan, Planner
from .podstate import Obj

ANNOTATION_HASH = "spotrun.dev/template-hash"
ANNOTATION_GENERATION = "spotrun.dev/generation"

Action = Literal["keep", "stop", "replace"]


def template_hash(template: dict[str, Any]) -> str:
    """A short, stable digest of a pod template (key order does not matter)."""
    text = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _annotations(pod: Obj) -> dict[str, Any]:
    meta = pod.get("metadata")
    found = meta.get("annotations") if isinstance(meta, dict) else None
    return found if isinstance(found, dict) else {}


def changed(spec: m.JobSpec, pod: Obj) -> bool:
    """Whether ``pod`` was built from another template than ``spec.template`` (a pod without
    the annotation, or with one that is not a string, reads as unchanged)."""
    recorded = _annotations(pod).get(ANNOTATION_HASH)
    return isinstance(recorded, str) and recorded != template_hash(spec.template)


def pod_generation(pod: Obj) -> int | None:
    """The job generation whose template the pod runs (None: not recorded or not a number)."""
    value = _annotations(pod).get(ANNOTATION_GENERATION)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


def action(pod_phase: str | None, deleting: bool, suspended: bool, is_changed: bool) -> Action:
    """What to do with the current attempt's pod (module docstring)."""
    if not is_changed or suspended or deleting:
        return "keep"
    if pod_phase == "Running":
        return "stop"
    # Unknown (a partitioned node): its trainer may still write the same prefix; keep it.
    return "replace" if pod_phase in (None, "Pending") else "keep"


def stamp(plan: Plan, generation: int, template: dict[str, Any]) -> None:
    """The pod ``plan`` creates records its template's hash and generation, and so does the
    status (``templateGeneration``: the generation the current attempt runs)."""
    if plan.create is None:
        return
    for pod in [plan.create, *plan.create_rest]:
        meta = pod["metadata"]
        meta["annotations"] = {
            **(meta.get("annotations") or {}),
            ANNOTATION_HASH: template_hash(template),
            ANNOTATION_GENERATION: str(generation),
        }
    plan.status.templateGeneration = generation


def generations(p: Planner, pod: Obj) -> str:
    """``generation 3 -> 4``: the one the pod runs (``?`` if unknown) and the spec's now."""
    old = pod_generation(pod) or p.st.templateGeneration
    return f"generation {old if old is not None else '?'} -> {p.job.generation}"


def restart(p: Planner, pod: Obj, gpus_available: bool) -> bool:
    """Act on a changed template for the current attempt's ``pod`` that has not ended;
    True when it did (the pass is done with the pod)."""
    meta, phase = pod["metadata"], (pod.get("status") or {}).get("phase")
    todo = action(phase, bool(meta.get("deletionTimestamp")), p.spec.suspend, changed(p.spec, pod))
    if todo == "keep":
        return False
    name, gens = meta["name"], generations(p, pod)
    p.plan.delete.append(name)
    if todo == "stop":
        p.event(
            m.REASON_TEMPLATE_CHANGED,
            f"spec.template changed ({gens}): {name} gets SIGTERM and saves; the next attempt "
            "restores that checkpoint and runs the new template",
        )
        return True
    # Pending: nothing to save. Its end is recorded now; the pod is released and deleted.
    p.plan.release.append(name)
    capacity = (meta.get("labels") or {}).get(LABEL_CAPACITY, "spot")
    record(p, Ended(Outcome.TEMPLATE_CHANGED, "replaced before it ran"), capacity)
    start_attempt(p, gpus_available)
    return True
