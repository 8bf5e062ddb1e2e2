"""The pod's environment as one typed model: what the operator sets, what the pod reads.

Torch-free: the operator builds a ``PodEnv`` and renders it with ``to_env()`` (builders.py);
the library (``env.Settings``), the sidecar (``sidecar.SidecarConfig``) and the S3 transfer
settings parse it with ``PodEnv.from_env()``. No other module names a ``SPOTRUN_*`` variable
it reads (tests/unit/test_pod_contract.py checks both directions), so a field the operator
sets cannot be read by nothing again, and a variable the pod reads cannot be one the
operator has stopped setting.

Each field is one variable. ``set_by="operator"``: the operator writes it into the pod.
``set_by="user"``: a tunable a user (or a test) may set in the template or on a laptop; the
operator never writes it. Unset or empty means ``None`` (the reader's default applies). A
value that does not parse raises ``PodEnvError`` naming the variable, the value and the fix;
``SPOTRUN_ATTEMPT`` and ``SPOTRUN_EXPECTED_STEP`` are the exceptions (informational; a
broken value reads as unset, see their docs).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Literal

from .retention import KeepBest

log = logging.getLogger("spotrun")

SetBy = Literal["operator", "user"]
Upload = Literal["sidecar", "library"]
SidecarMode = Literal["sync", "report"]
BestMode = Literal["min", "max"]

EXPECTED_STEP_ENV = "SPOTRUN_EXPECTED_STEP"
START_WITHOUT_STORAGE_ENV = "SPOTRUN_START_WITHOUT_STORAGE"
MAX_STEP_DIGITS = 19  # a step fits in int64
# SPOTRUN_PREVIOUS_UNTIL is the old pod's deletionTimestamp plus this: two nodes' clocks may
# differ this much (the sidecar also accepts a marker written this much before the notice)
PREVIOUS_SKEW_SECONDS = 10.0


class PodEnvError(ValueError):
    """A SPOTRUN_* variable whose value cannot be used."""


@dataclass(frozen=True)
class Var:
    """How one field travels: its variable, who sets it, how it is parsed and written."""

    name: str
    set_by: SetBy
    doc: str
    parse: Callable[[str, str], Any]
    render: Callable[[Any], str] = str


def _refuse(name: str, value: str, what: str) -> PodEnvError:
    return PodEnvError(f"{name}={value!r} is not {what}; fix it or unset it")


def _text(name: str, value: str) -> str:
    return value


def _whole(low: int, high: int | None = None) -> Callable[[str, str], int]:
    def parse(name: str, value: str) -> int:
        ok = value.isascii() and value.isdigit() and len(value) <= MAX_STEP_DIGITS
        if not ok or int(value) < low or (high is not None and int(value) > high):
            bound = f"<= {high}" if high is not None else ""
            raise _refuse(name, value, f"a whole number >= {low} {bound}".rstrip())
        return int(value)

    return parse


def _seconds(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number >= 0):
        raise _refuse(name, value, "a number of seconds (finite, >= 0)")
    return number


def _one_of(*choices: str) -> Callable[[str, str], str]:
    def parse(name: str, value: str) -> str:
        if value not in choices:
            raise _refuse(name, value, f"one of {', '.join(choices)}")
        return value

    return parse


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _flag(name: str, value: str) -> bool:
    """1/true/yes/on or 0/false/no/off (any case); anything else is refused by name, never read
    as "off" (SPOTRUN_SAVE_AT_ONCE=true meaning the opposite would lose a final save)."""
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise _refuse(name, value, "1 or 0 (true/false, yes/no, on/off)")


def _lenient_step(name: str, value: str) -> int | None:
    """ASCII digits only; anything else is ignored (and said), so a broken value falls back to
    the first-attempt behaviour, never to a crash of the sidecar."""
    if value.isascii() and value.isdigit() and len(value) <= MAX_STEP_DIGITS:
        return int(value)
    log.warning("spotrun: ignoring %s=%r: not a step number", name, value)
    return None


def _lenient_attempt(name: str, value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() else None


def _instant(name: str, value: str) -> datetime:
    """An RFC 3339 time with its zone (``2026-12-01T17:00:00Z``)."""
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise _refuse(name, value, "an RFC 3339 time with a zone (2026-12-01T17:00:00Z)")
    return when


def _render_instant(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _render_seconds(value: float) -> str:
    return format(value, "g")


def _render_flag(value: bool) -> str:
    return "1" if value else "0"


def _var(name: str, set_by: SetBy, doc: str, parse: Callable[[str, str], Any], **kw: Any) -> Any:
    return field(default=None, metadata={"var": Var(name, set_by, doc, parse, **kw)})


OP: SetBy = "operator"
USER: SetBy = "user"


@dataclass(frozen=True)
class PodEnv:
    """Every SPOTRUN_* variable of a pod. ``None``: unset."""

    # -- set by the operator (spec and status of the job) --------------------------------
    job: str | None = _var("SPOTRUN_JOB", OP, "metadata.name of the job", _text)
    namespace: str | None = _var("SPOTRUN_NAMESPACE", OP, "namespace of the job", _text)
    attempt: int | None = _var(
        "SPOTRUN_ATTEMPT", OP, "attempt number (a non-number reads as unset)", _lenient_attempt
    )
    checkpoint_dir: str | None = _var(
        "SPOTRUN_CHECKPOINT_DIR", OP, "spec.checkpoint.path: the shared checkpoint volume", _text
    )
    device: str | None = _var("SPOTRUN_DEVICE", OP, "cuda or cpu (spec.gpu)", _text)
    grace_seconds: float | None = _var(
        "SPOTRUN_GRACE_SECONDS",
        OP,
        "spec.terminationGracePeriodSeconds",
        _seconds,
        render=_render_seconds,
    )
    nnodes: int | None = _var(
        "SPOTRUN_NNODES", OP, "pods (nodes) of this attempt's gang (unset: 1)", _whole(1, 99999)
    )
    node_rank: int | None = _var(
        "SPOTRUN_NODE_RANK",
        OP,
        "this pod's rank in the gang, 0..NNODES-1 (unset: 0)",
        _whole(0, 99998),
    )
    procs_per_node: int | None = _var(
        "SPOTRUN_NPROC_PER_NODE",
        OP,
        "spec.procsPerNode: ranks per pod (unset: 1)",
        _whole(1, 99999),
    )
    keep: int | None = _var("SPOTRUN_KEEP", OP, "spec.checkpoint.keep", _whole(1))
    keep_best_metric: str | None = _var(
        "SPOTRUN_KEEP_BEST_METRIC", OP, "spec.checkpoint.keepBest.metric", _text
    )
    keep_best_mode: BestMode | None = _var(
        "SPOTRUN_KEEP_BEST_MODE", OP, "spec.checkpoint.keepBest.mode", _one_of("min", "max")
    )
    sidecar_port: int | None = _var(
        "SPOTRUN_SIDECAR_PORT", OP, "spec.checkpoint.sidecarPort", _whole(1, 65535)
    )
    interval_steps: int | None = _var(
        "SPOTRUN_INTERVAL_STEPS", OP, "spec.checkpoint.intervalSteps", _whole(1)
    )
    interval_seconds: int | None = _var(
        "SPOTRUN_INTERVAL_SECONDS", OP, "spec.checkpoint.intervalSeconds", _whole(1)
    )
    storage_uri: str | None = _var(
        "SPOTRUN_STORAGE_URI", OP, "spec.checkpoint.storage.uri (s3://bucket/prefix)", _text
    )
    upload: Upload | None = _var(
        "SPOTRUN_UPLOAD",
        OP,
        "who uploads to S3: sidecar (the operator's pods) or library (direct mode, the default)",
        _one_of("sidecar", "library"),
    )
    sidecar_mode: SidecarMode | None = _var(
        "SPOTRUN_SIDECAR_MODE",
        OP,
        "sync (S3) or report (a PVC: /status only)",
        _one_of("sync", "report"),
    )
    expected_step: int | None = _var(
        EXPECTED_STEP_ENV,
        OP,
        "status.lastCheckpoint.step: the sidecar waits for unreadable storage instead of "
        "starting from scratch (a non-number is ignored, with a warning)",
        _lenient_step,
    )

    # -- set by the user (template env, a laptop, tests) ---------------------------------
    start_without_storage: bool | None = _var(
        START_WITHOUT_STORAGE_ENV,
        USER,
        "1: start from scratch when the storage cannot be read though a step was saved",
        _flag,
        render=_render_flag,
    )
    progress_file: str | None = _var(
        "SPOTRUN_PROGRESS_FILE", USER, "a JSON-lines progress log for tools", _text
    )
    final_upload_timeout: float | None = _var(
        "SPOTRUN_FINAL_UPLOAD_TIMEOUT",
        USER,
        "direct mode without a signal: seconds close() waits for S3 (default 300)",
        _seconds,
        render=_render_seconds,
    )
    sync_poll_seconds: float | None = _var(
        "SPOTRUN_SYNC_POLL_SECONDS",
        USER,
        "sidecar: seconds between two scans",
        _seconds,
        render=_render_seconds,
    )
    restore_timeout: float | None = _var(
        "SPOTRUN_RESTORE_TIMEOUT",
        USER,
        "sidecar, first attempt: seconds of failing restores before the trainer starts anyway",
        _seconds,
        render=_render_seconds,
    )
    restore_max_backoff: float | None = _var(
        "SPOTRUN_RESTORE_MAX_BACKOFF",
        USER,
        "sidecar: the longest wait between two restore tries",
        _seconds,
        render=_render_seconds,
    )
    termination_message_path: str | None = _var(
        "SPOTRUN_TERMINATION_MESSAGE_PATH",
        USER,
        "sidecar: where its final report goes (default /dev/termination-log)",
        _text,
    )
    s3_part_mb: int | None = _var("SPOTRUN_S3_PART_MB", USER, "S3 multipart size, MiB", _whole(5))
    s3_concurrency: int | None = _var(
        "SPOTRUN_S3_CONCURRENCY", USER, "parallel S3 part transfers", _whole(1)
    )
    s3_call_timeout: float | None = _var(
        "SPOTRUN_S3_CALL_TIMEOUT",
        USER,
        "seconds one S3 call may take (plus its bytes at 1 MiB/s)",
        _seconds,
        render=_render_seconds,
    )
    s3_delta: bool | None = _var(
        "SPOTRUN_S3_DELTA",
        USER,
        "unset or 1: a multipart upload copies the parts unchanged since the previous upload "
        "of the same file server-side (UploadPartCopy) and sends only the changed ones; "
        "0: send every part",
        _flag,
        render=_render_flag,
    )
    save_at_once: bool | None = _var(
        "SPOTRUN_SAVE_AT_ONCE",
        USER,
        "0: on SIGTERM train on through the notice, saving at the last safe step boundary "
        "(spotrun.notice); unset or 1: save at the next step boundary (the default); "
        "Checkpointer(save_at_once=...) wins",
        _flag,
        render=_render_flag,
    )

    # -- warm start (docs/warm-start.md) -------------------------------------------------
    previous_attempt: int | None = _var(
        "SPOTRUN_PREVIOUS_ATTEMPT",
        OP,
        "the attempt still saving when this pod was created (warm start): the sidecar waits "
        "for its attempt-ended marker before restoring",
        _whole(1),
    )
    previous_until: datetime | None = _var(
        "SPOTRUN_PREVIOUS_UNTIL",
        OP,
        "RFC 3339 time: that attempt's pod's deletionTimestamp plus a clock-skew margin; the "
        "sidecar waits for its marker no longer",
        _instant,
        render=_render_instant,
    )
    ready_timeout: float | None = _var(
        "SPOTRUN_READY_TIMEOUT",
        USER,
        "trainer under a sidecar: seconds Checkpointer.restore() waits for the sidecar's "
        "restore (.spotrun-ready; default 1800)",
        _seconds,
        render=_render_seconds,
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PodEnv:
        """Parse every variable of ``environ`` (default: this process's environment)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f, var in _vars():
            raw = env.get(var.name, "")
            values[f.name] = var.parse(var.name, raw) if raw else None
        found = cls(**values)
        if found.keep_best_metric is not None and found.keep_best_mode is None:
            raise PodEnvError(
                f"SPOTRUN_KEEP_BEST_METRIC={found.keep_best_metric!r} needs "
                "SPOTRUN_KEEP_BEST_MODE (min or max); set it or unset the metric"
            )
        if (found.node_rank or 0) >= (found.nnodes or 1):
            raise PodEnvError(
                f"SPOTRUN_NODE_RANK={str(found.node_rank)!r} is not below SPOTRUN_NNODES="
                f"{found.nnodes or 1}; the operator sets both for each pod of a gang"
            )
        return found

    def to_env(self) -> dict[str, str]:
        """The variables of the fields that are set, as the operator writes them."""
        out = {}
        for f, var in _vars():
            value = getattr(self, f.name)
            if value is not None and var.render(value) != "":
                out[var.name] = var.render(value)
        return out

    @property
    def keep_best(self) -> KeepBest | None:
        """spec.checkpoint.keepBest: also keep the best checkpoint by this metric."""
        metric, mode = self.keep_best_metric, self.keep_best_mode
        return KeepBest(metric, mode) if metric is not None and mode is not None else None

    @property
    def job_key(self) -> str | None:
        """``namespace/name`` of the job, as manifests record it; None outside a job."""
        return f"{self.namespace}/{self.job}" if self.job and self.namespace else None


def _vars() -> list[tuple[Any, Var]]:
    return [(f, f.metadata["var"]) for f in fields(PodEnv)]


def variables(set_by: SetBy | None = None) -> dict[str, Var]:
    """The model's variables by name (those ``set_by`` one side, or all)."""
    return {v.name: v for _, v in _vars() if set_by is None or v.set_by == set_by}


# The user's variables the sidecar reads (sidecar.SidecarConfig, s3store.TransferSettings).
# Under the operator it runs in its own container: the operator hands it these from the
# trainer's env, the one place of the template where a user sets them.
SIDECAR_USER_FIELDS = (
    "start_without_storage",
    "restore_timeout",
    "restore_max_backoff",
    "s3_part_mb",
    "s3_concurrency",
    "s3_call_timeout",
    "s3_delta",
)


def sidecar_user_variables() -> frozenset[str]:
    """The variables of ``SIDECAR_USER_FIELDS``."""
    return frozenset(name_of(f) for f in SIDECAR_USER_FIELDS)


def name_of(field_name: str) -> str:
    """The variable of a ``PodEnv`` field (``name_of("storage_uri")``: SPOTRUN_STORAGE_URI)."""
    return {f.name: v.name for f, v in _vars()}[field_name]
