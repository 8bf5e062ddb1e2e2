"""``spotrun sidecar``: restore from S3 before the trainer starts, then upload each checkpoint.

Runs as the pod's native sidecar. Start: download the newest valid checkpoint into
``SPOTRUN_CHECKPOINT_DIR`` and only then answer /startupz (the trainer starts after it).
Then: upload every newly committed checkpoint (temp folders are never uploaded). On SIGTERM:
keep going until the trainer has exited and its final checkpoint is in S3, or a margin before
the grace deadline; write a one-line JSON summary to the termination message file.
Throughout, GET /status answers JSON of the newest durable checkpoint (step, epoch, time,
uri, metrics) for the operator's live progress.

``SPOTRUN_SIDECAR_MODE=report`` (checkpoints on a shared volume, nothing to sync): no restore
and no upload; /status reports the newest committed checkpoint in the directory.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import layout, marker
from .env import Settings
from .localstore import LocalStore
from .mirror import newest_committed
from .probes import DEFAULT_PORT, Health, serve
from .s3errors import PermanentStoreError
from .s3store import S3Store
from .signals import StopRequest
from .store import StoreError
from .syncer import Syncer

log = logging.getLogger("spotrun")


@dataclass(frozen=True)
class SidecarConfig:
    port: int = DEFAULT_PORT
    poll_seconds: float = 0.5
    restore_timeout: float = 120.0
    margin_seconds: float = 2.0
    quiet_seconds: float = 5.0
    keep: int = 3
    termination_path: str = "/dev/termination-log"
    mode: str = "sync"  # sync (S3) or report (a shared volume: only /status)

    @classmethod
    def from_env(cls) -> SidecarConfig:
        env = os.environ
        return cls(
            port=int(env.get("SPOTRUN_SIDECAR_PORT", DEFAULT_PORT)),
            poll_seconds=float(env.get("SPOTRUN_SYNC_POLL_SECONDS", cls.poll_seconds)),
            restore_timeout=float(env.get("SPOTRUN_RESTORE_TIMEOUT", cls.restore_timeout)),
            keep=int(env.get("SPOTRUN_KEEP", cls.keep)),
            termination_path=env.get("SPOTRUN_TERMINATION_MESSAGE_PATH", cls.termination_path),
            mode=env.get("SPOTRUN_SIDECAR_MODE") or cls.mode,
        )


def checkpoint_report(local: LocalStore, name: str, uri: str) -> dict[str, Any] | None:
    """What /status says of checkpoint ``name``: its manifest's step, epoch, time, metrics."""
    try:
        data = json.loads((local.path(name) / layout.MANIFEST).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("step"), int):
        return None
    metrics = data.get("metrics")
    return {
        "step": data["step"],
        "epoch": data.get("epoch"),
        "time": data.get("time"),
        "uri": uri,
        "metrics": metrics if isinstance(metrics, dict) else {},
    }


class Reporter:
    """Keeps ``health.checkpoint`` on the newest durable step (reads a manifest per change)."""

    def __init__(self, health: Health, local: LocalStore, uri_of: Callable[[str], str]) -> None:
        self.health, self.local, self.uri_of = health, local, uri_of
        self.step: int | None = None

    def update(self, step: int | None) -> None:
        if step is None or step == self.step:
            return
        name = layout.step_dirname(step)
        report = checkpoint_report(self.local, name, self.uri_of(name))
        if report is not None:
            self.step, self.health.checkpoint = step, report


def summary(
    syncer: Syncer, final_saved: bool, note: str | None, report: dict[str, Any] | None = None
) -> str:
    """The termination message: one line of JSON the operator reads from the pod status."""
    step = syncer.durable_step
    known = report if report is not None and report.get("step") == step else {}
    return json.dumps(
        {
            "step": step,
            "epoch": known.get("epoch"),
            "uri": syncer.remote.file_uri(layout.step_dirname(step)) if step is not None else None,
            "time": datetime.fromtimestamp(syncer.durable_at, timezone.utc).isoformat()
            if syncer.durable_at
            else None,
            "metrics": known.get("metrics") or {},
            "finalSaved": final_saved,
            "problem": syncer.problem,
            "note": note,
        },
        separators=(",", ":"),
    )


def restore_phase(syncer: Syncer, timeout: float, stop: StopRequest) -> None:
    """Retry transient failures up to ``timeout``; permanent ones give up at once."""
    deadline = time.monotonic() + timeout
    delay = 0.5
    while True:
        try:
            step = syncer.restore_newest()
            log.info("spotrun sidecar: ready; newest local checkpoint: step %s", step)
            return
        except PermanentStoreError:
            break
        except StoreError:
            if time.monotonic() + delay > deadline or stop.requested:
                break
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
    log.error(
        "spotrun sidecar: starting the trainer without restoring from %s (%s); it trains on "
        "local checkpoints and uploads resume once S3 works",
        syncer.remote.uri,
        syncer.problem,
    )


def _writing(local: LocalStore) -> bool:
    return any(n.startswith(layout.TMP_PREFIX) for n in local.names())


def run(settings: Settings, config: SidecarConfig) -> int:
    if config.mode == "report":
        return report_only(settings, config)
    if not settings.storage_uri or not settings.storage_uri.startswith("s3://"):
        log.error(
            "spotrun sidecar: SPOTRUN_STORAGE_URI=%r is not an s3:// URI; set it to the bucket "
            "and prefix that should hold this job's checkpoints",
            settings.storage_uri,
        )
        return 2
    local = LocalStore(settings.checkpoint_dir)
    local.dir.mkdir(parents=True, exist_ok=True)
    syncer = Syncer(local, S3Store.from_uri(settings.storage_uri), keep=config.keep)
    health = Health()
    reporter = Reporter(health, local, syncer.remote.file_uri)
    stop = StopRequest()
    stop.install()
    server = serve(health, config.port)
    try:
        restore_phase(syncer, config.restore_timeout, stop)
        health.problem = syncer.problem
        reporter.update(syncer.durable_step)
        health.started = True
        (local.root / ".spotrun-ready").touch()
        final_saved, note = _sync_until_stopped(syncer, health, stop, settings, config, reporter)
    finally:
        server.shutdown()
        stop.uninstall()
    line = summary(syncer, final_saved, note, health.checkpoint)
    log.info("spotrun sidecar: %s", line)
    _write_termination_message(config.termination_path, line)
    return 0


def _sync_until_stopped(
    syncer: Syncer,
    health: Health,
    stop: StopRequest,
    settings: Settings,
    config: SidecarConfig,
    reporter: Reporter,
) -> tuple[bool, str | None]:
    root = syncer.local.root
    last_change = time.monotonic()
    seen: tuple[str, ...] = ()
    while True:
        synced = syncer.sync_once()
        health.problem = syncer.problem
        reporter.update(syncer.durable_step)
        if stop.requested and stop.first_at is not None:
            exit_note = marker.read(root)
            if exit_note is not None and not _writing(syncer.local):
                wanted = exit_note.get("step")
                if wanted is None or (syncer.durable_step or -1) >= int(wanted):
                    return True, None
            listing = tuple(sorted(syncer.local.names()))
            if listing != seen:
                seen, last_change = listing, time.monotonic()
            quiet = time.monotonic() - last_change >= config.quiet_seconds
            if exit_note is None and synced and quiet and not _writing(syncer.local):
                return False, "the trainer exited without saving a final checkpoint"
            left = settings.grace_seconds - config.margin_seconds
            if time.monotonic() - stop.first_at >= left:
                return (
                    False,
                    f"grace deadline reached: {syncer.problem or 'final upload unfinished'}",
                )
        time.sleep(config.poll_seconds)


def report_only(settings: Settings, config: SidecarConfig) -> int:
    """A shared volume is the durable store: report its newest checkpoint until SIGTERM."""
    local = LocalStore(settings.checkpoint_dir)
    local.dir.mkdir(parents=True, exist_ok=True)
    health = Health(started=True)
    reporter = Reporter(health, local, local.file_uri)
    stop = StopRequest()
    stop.install()
    server = serve(health, config.port)
    try:
        while True:
            newest = newest_committed(local)
            reporter.update(newest[0] if newest else None)
            if stop.requested:
                break
            time.sleep(config.poll_seconds)
    finally:
        server.shutdown()
        stop.uninstall()
    exit_note = marker.read(local.root) or {}
    wanted, step = exit_note.get("step"), reporter.step
    report = health.checkpoint or {}
    line = json.dumps(
        {
            "step": step,
            "epoch": report.get("epoch"),
            "uri": report.get("uri"),
            "time": report.get("time"),
            "metrics": report.get("metrics") or {},
            "finalSaved": bool(exit_note) and (wanted is None or (step or -1) >= int(wanted)),
            "problem": None,
            "note": None if exit_note else "the trainer left no exit note",
        },
        separators=(",", ":"),
    )
    log.info("spotrun sidecar: %s", line)
    _write_termination_message(config.termination_path, line)
    return 0


def _write_termination_message(path: str, line: str) -> None:
    try:
        Path(path).write_text(line)
    except OSError as e:
        log.warning("spotrun sidecar: cannot write the termination message to %s: %s", path, e)
