"""Job conditions by the Kubernetes conventions: one per type, ``lastTransitionTime`` moves only
when the status flips, ``observedGeneration`` follows the spec."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from . import models as m
from .podstate import ts


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
