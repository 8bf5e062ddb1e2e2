"""What an attempt's sidecar says (its /status, or its termination message when it stopped):
the newest durable checkpoint, parsed by the shared ``spotrun.contract`` and nothing else."""

from __future__ import annotations

import json
from typing import Any

from spotrun import contract

from . import models as m
from .builders import SIDECAR
from .podstate import Obj, container_status


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


def sidecar_report(pod: Obj) -> tuple[m.CheckpointRef, dict[str, float]] | None:
    """The sidecar's termination message (one line of JSON): its newest durable checkpoint."""
    cs = container_status(pod, SIDECAR, init=True) or {}
    for state in (cs.get("state") or {}, cs.get("lastState") or {}):
        message = (state.get("terminated") or {}).get("message")
        if message and isinstance(message, str):
            return checkpoint_report(contract.parse(message))
    return None


def sidecar_checkpoint(pod: Obj) -> m.CheckpointRef | None:
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
