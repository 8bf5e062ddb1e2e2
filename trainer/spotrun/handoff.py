"""``<prefix>/attempts/attempt-000000000003.json``: "attempt 3 has ended", written by its sidecar.

Warm start (docs/warm-start.md): the operator creates attempt N+1's pod while attempt N's pod
still saves on its notice. N+1's sidecar must not restore a checkpoint older than N's final
save, so N's sidecar writes this small object after its final flush (or when it gives up), and
N+1's sidecar (``SPOTRUN_PREVIOUS_ATTEMPT=N``) waits for it, or for ``SPOTRUN_PREVIOUS_UNTIL``
(N's pod's deletionTimestamp plus a clock-skew margin: N cannot write after it), then
restores the newest valid checkpoint as usual.

The object lies outside ``<prefix>/checkpoints/``, so nothing that lists, prunes, verifies or
inspects checkpoints ever sees it; ``spotrun purge`` deletes it with the checkpoints. Its
content came from another pod: ``decode`` reads it as hostile (size bound, strict types);
anything else reads as "no marker", so the wait runs to its deadline, never crashes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Literal

from botocore.exceptions import BotoCoreError, ClientError

from .podenv import PREVIOUS_SKEW_SECONDS
from .s3errors import explain
from .store import StoreError

if TYPE_CHECKING:
    from .s3store import S3Store

log = logging.getLogger("spotrun")

FOLDER = "attempts"
MAX_BYTES = 4096
POLL_SECONDS = 0.25
SKEW_SECONDS = PREVIOUS_SKEW_SECONDS  # two nodes' clocks may differ this much
MAX_NUMBER = 2**63 - 1


@dataclass(frozen=True)
class Ended:
    """What attempt ``attempt``'s sidecar said when it stopped."""

    attempt: int
    step: int | None  # the newest step it knows is durable (None: none)
    final_saved: bool  # whether the trainer's final save reached S3
    time: datetime | None = None  # when it was written (the writer's clock)


def key(prefix: str, attempt: int) -> str:
    """The S3 key of attempt ``attempt``'s marker under the job's ``prefix`` (pure)."""
    if not 1 <= attempt <= MAX_NUMBER:
        raise ValueError(f"an attempt number is >= 1, got {attempt}")
    name = f"{FOLDER}/attempt-{attempt:012d}.json"
    return f"{prefix}/{name}" if prefix else name


def encode(ended: Ended, job: str | None) -> bytes:
    data = {
        "attempt": ended.attempt,
        "step": ended.step,
        "finalSaved": ended.final_saved,
        "job": job,
        "time": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
    }
    return json.dumps(data).encode()


def _number(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_NUMBER


def decode(blob: bytes, attempt: int) -> Ended | None:
    """The marker of ``attempt`` from untrusted bytes; None when they are not one (too big,
    not JSON, another attempt's, a step that is not a whole number, finalSaved not a bool)."""
    if len(blob) > MAX_BYTES:
        return None
    try:
        data = json.loads(blob)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("attempt") != attempt:
        return None
    step, saved = data.get("step"), data.get("finalSaved")
    if not _number(data["attempt"]) or (step is not None and not _number(step)):
        return None
    if not isinstance(saved, bool):
        return None
    return Ended(attempt, step, saved, _instant(data.get("time")))


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def write(remote: S3Store, ended: Ended, job: str | None) -> None:
    """Put the marker (under the store's deadline cap). Raises StoreError."""
    body = encode(ended, job)
    where = key(remote.prefix, ended.attempt)
    try:
        remote.call("put_object", len(body), Bucket=remote.bucket, Key=where, Body=body)
    except (BotoCoreError, ClientError) as e:
        raise explain(e, remote.uri, remote.endpoint) from e


def read(remote: S3Store, attempt: int) -> Ended | None:
    """The marker of ``attempt``, None while there is none (or it is not valid). Raises
    StoreError when the storage cannot be read."""
    where = key(remote.prefix, attempt)
    try:
        got = remote.call(
            "get_object", Bucket=remote.bucket, Key=where, Range=f"bytes=0-{MAX_BYTES}"
        )
        blob = got["Body"].read(MAX_BYTES + 1)
    except ClientError as e:
        if str(e.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise explain(e, remote.uri, remote.endpoint) from e
    except BotoCoreError as e:
        raise explain(e, remote.uri, remote.endpoint) from e
    found = decode(bytes(blob), attempt)
    if found is None:
        log.warning(
            "spotrun sidecar: s3://%s/%s is not a valid attempt-ended marker; ignored "
            "(waiting for the deadline instead)",
            remote.bucket,
            where,
        )
    return found


Move = Literal["restore", "wait"]


def stale(found: Ended, not_before: datetime | None) -> bool:
    """A marker written before the previous attempt's notice began (``not_before``: its
    deadline less the grace period and the skew margin) is another incarnation's: a job
    deleted and made again under the same name and prefix (pure)."""
    return not_before is not None and (found.time is None or found.time < not_before)


def notice_began(until: datetime | None, grace: float) -> datetime | None:
    """The earliest time a marker of the previous attempt can honestly carry (pure): its
    notice began at ``until`` less the grace period and the margin the operator added, and
    the old node's clock may run behind the operator's by up to that margin again."""
    if until is None:
        return None
    return until - timedelta(seconds=grace + 2 * SKEW_SECONDS)


def next_move(found: Ended | None, now: datetime, until: datetime | None) -> Move:
    """Whether the new sidecar may restore now (pure): once the previous attempt's marker is
    there, or once it can no longer write one (its pod's grace period, plus margin, is over)."""
    if found is not None or until is None or now >= until:
        return "restore"
    return "wait"


Why = Literal["marker", "deadline", "stopped"]


def wait_for_previous(
    look: Callable[[], Ended | None],
    attempt: int,
    until: datetime | None,
    stopped: Callable[[float], bool],
    not_before: datetime | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> tuple[Why, Ended | None]:
    """Wait until attempt ``attempt`` has ended (``look`` finds its marker) or ``until``.
    ``stopped(seconds)`` sleeps that long and says whether the sidecar was told to stop.
    A storage that cannot be read counts as "no marker yet" (the deadline still bounds it);
    so does a marker older than ``not_before`` (``stale``)."""
    started = time.monotonic()
    problem: str | None = None
    while True:
        try:
            found = look()
        except StoreError as e:
            found = None
            if str(e) != problem:
                log.warning("spotrun sidecar: cannot read attempt %d's marker: %s", attempt, e)
            problem = str(e)
        if found is not None and stale(found, not_before):
            if problem != "stale":
                log.warning(
                    "spotrun sidecar: attempt %d's marker was written at %s, before its notice "
                    "could have begun (%s): another incarnation's; ignored",
                    attempt,
                    found.time,
                    not_before,
                )
            problem, found = "stale", None
        now = clock()
        if next_move(found, now, until) == "restore":
            waited = time.monotonic() - started
            if found is not None:
                log.info(
                    "spotrun sidecar: attempt %d ended (final save %s, step %s) after %.2fs: "
                    "restoring",
                    attempt,
                    "made it" if found.final_saved else "did not make it",
                    found.step,
                    waited,
                )
                return "marker", found
            log.warning(
                "spotrun sidecar: attempt %d left no attempt-ended marker by %s (its pod's "
                "grace period is over): restoring the newest valid checkpoint",
                attempt,
                until.isoformat() if until else "now",
            )
            return "deadline", None
        left = (until - now).total_seconds() if until is not None else POLL_SECONDS
        if stopped(min(POLL_SECONDS, max(left, 0.0))):
            return "stopped", None
