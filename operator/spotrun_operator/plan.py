"""A ``Plan``: what one reconcile pass should do (the next status, a pod to create, pods to
delete or release, Events), and the ``Planner`` that the decisions fill it with."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

from . import models as m
from .builders import Job
from .conditions import set_condition
from .endings import Ended
from .podstate import ts


class Event(NamedTuple):
    """A Kubernetes Event the pass emits on the job (a tuple: ``kind, reason, message = e``)."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Plan:
    status: m.JobStatus
    create: dict[str, Any] | None = None  # the attempt's pod (a gang's rank 0)
    create_rest: list[dict[str, Any]] = field(default_factory=list)  # a gang's other ranks
    service: dict[str, Any] | None = None  # a gang's headless Service, created before its pods
    delete: list[str] = field(default_factory=list)
    release: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    ended: Ended | None = None  # the end of an attempt this plan records
    delete_job: bool = False  # ttlSecondsAfterFinished has run out

    def requeue(self, seconds: float) -> None:
        """Recheck no later than ``seconds`` from now."""
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = seconds

    def tell(self, reason: str, message: str, warning: bool = False) -> None:
        """Emit an Event on the job (Warning when ``warning``)."""
        self.events.append(Event("Warning" if warning else "Normal", reason, message))


class Planner:
    """The job, the time and the plan being filled, with the moves every decision makes."""

    def __init__(self, job: Job, now: datetime) -> None:
        self.job = job
        self.spec = job.spec
        self.now = now
        self.plan = Plan(status=job.status.model_copy(deep=True))
        self.st = self.plan.status
        self.spot_free: bool | None = None  # a spot node is free (read for spec.deadline only)

    def cond(self, kind: str, on: bool, reason: str, message: str = "") -> None:
        set_condition(self.st, kind, on, reason, message, self.now, self.job.generation)

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.plan.tell(reason, message, warning)

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
