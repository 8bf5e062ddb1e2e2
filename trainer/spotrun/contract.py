"""The typed contract between the operator and a pod's sidecar. Torch-free: the operator and
the sidecar both import it, so what one writes the other parses with the same code. (The
pod's environment, the other half of the contract, is ``podenv.PodEnv``.)

The sidecar's report (GET /status while it runs, the termination message when it ends) is a
``SidecarReport``. Everything in it came from inside a tenant's pod, so ``parse`` treats it as
hostile: bounded size, strict types (a boolean is not a step), bounded numbers and strings,
non-finite metrics dropped. Anything else is ``None``, never an exception.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

# The pod's environment is ``podenv.PodEnv``; these two names are re-exported for the
# operator's messages (the step the status says was saved; the user's opt-out of waiting).
from .podenv import EXPECTED_STEP_ENV as EXPECTED_STEP_ENV
from .podenv import START_WITHOUT_STORAGE_ENV as START_WITHOUT_STORAGE_ENV

MAX_REPORT_BYTES = 16 * 1024  # a termination message is at most 4 KiB; /status stays small too
MAX_STEP = 2**63 - 1
MAX_METRICS = 32
MAX_TEXT = 1024

State = Literal["restoring", "waiting-for-storage", "running", "stopped"]


class SidecarReport(BaseModel):
    """The newest durable checkpoint the sidecar knows of, and how the sidecar is doing."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    step: StrictInt | None = Field(default=None, ge=0, le=MAX_STEP)
    epoch: StrictInt | None = Field(default=None, ge=0, le=MAX_STEP)
    time: str | None = Field(default=None, max_length=64)
    uri: str | None = Field(default=None, max_length=MAX_TEXT)
    metrics: dict[str, float] = Field(default_factory=dict)
    finalSaved: StrictBool | None = None  # noqa: N815 (the JSON name)
    problem: str | None = Field(default=None, max_length=MAX_TEXT)
    note: str | None = Field(default=None, max_length=MAX_TEXT)
    state: State | None = None
    # why the checkpoint was written (its manifest's reason: periodic, preemption, final...):
    # "final" is close()'s save at the end of a script that ran to its end
    reason: str | None = Field(default=None, max_length=64)
    # a pod of a multi-node gang (absent for a single pod): its node, the newest step whose
    # part it has in S3, and on node 0 whether that step is committed (its MANIFEST.json in
    # S3) or why not yet (``pending``). Its ``finalSaved`` says node 0 committed the final
    # checkpoint; on another node, that this node's part of it is in S3.
    nodeRank: StrictInt | None = Field(default=None, ge=0, le=MAX_STEP)  # noqa: N815
    nnodes: StrictInt | None = Field(default=None, ge=1, le=MAX_STEP)
    partStep: StrictInt | None = Field(default=None, ge=0, le=MAX_STEP)  # noqa: N815
    committed: StrictBool | None = None
    pending: str | None = Field(default=None, max_length=MAX_TEXT)

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


def finite_metrics(raw: Any) -> dict[str, float]:
    """Numeric, finite metrics with short names, at most ``MAX_METRICS``; the rest dropped."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, float] = {}
    for key, value in raw.items():
        if len(out) >= MAX_METRICS:
            break
        if not isinstance(key, str) or not 0 < len(key) <= 64:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range
            continue
        if math.isfinite(number):
            out[key] = number
    return out


def parse(blob: str | bytes | None) -> SidecarReport | None:
    """A report from untrusted bytes, or None when they are not a valid report."""
    if blob is None or len(blob) > MAX_REPORT_BYTES:
        return None
    try:
        data = json.loads(blob)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    data = {**data, "metrics": finite_metrics(data.get("metrics"))}
    try:
        return SidecarReport.model_validate(data)
    except ValidationError:
        return None
