"""``spotrun sidecar``: restore from S3 before the trainer starts, then upload each checkpoint.

Runs as the pod's native sidecar. Start: download the newest valid checkpoint into
``SPOTRUN_CHECKPOINT_DIR`` and only then answer /startupz (the trainer starts after it).
Then: upload every newly committed checkpoint (temp folders are never uploaded) and prune S3
to the newest ``keep`` plus the best by ``keepBest``'s metric. On SIGTERM: keep going until the
trainer has exited and its final checkpoint is in S3, or a margin before the grace deadline;
write a one-line JSON summary to the termination message file. Whether the trainer still runs
is read from its lock (``liveness``), never guessed from a quiet folder: a trainer slowed by
load has the whole grace period for its final save.
Throughout, GET /status answers a ``contract.SidecarReport``: the newest durable checkpoint
(step, epoch, time, uri, metrics) and the state, for the operator's live progress.

A pod of a multi-node gang (``SPOTRUN_NNODES`` > 1) uploads its node's part of each
checkpoint, and node 0 commits it once every node's part is in S3 (``gangsync``); its final
save is done when its part is up (node 0: when the checkpoint is committed).

``SPOTRUN_SIDECAR_MODE=report`` (checkpoints on a shared volume, nothing to sync): no restore
and no upload; /status reports the newest committed checkpoint in the directory.

With ``SPOTRUN_EXPECTED_STEP`` (the step the job's status says was saved) the restore never
gives up on unreadable storage: the sidecar waits with capped backoff, saying so at /status
(``state: waiting-for-storage``, ``problem``), unless ``SPOTRUN_START_WITHOUT_STORAGE=1``.
Every S3 call has an overall deadline, and after SIGTERM none runs past the grace deadline
(less ``margin_seconds``), so the sidecar exits on time against a hanging endpoint too.
"""

from __future__ import annotations

import errno
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from . import handoff, integrity, layout, liveness, marker, podnotes, readiness
from .contract import MAX_TEXT, SidecarReport, finite_metrics
from .env import Settings
from .gangparts import Role
from .gangsync import GangSyncer
from .localstore import LocalStore
from .mirror import newest_committed
from .podenv import PodEnv
from .probes import DEFAULT_PORT, Health, ProbeServer, report, serve
from .retention import KeepBest
from .s3store import S3Store
from .signals import StopRequest
from .startup import restore_phase
from .store import StoreError
from .syncer import Syncer

log = logging.getLogger("spotrun")

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # what /status reads of a manifest (steps, metrics)


@dataclass(frozen=True)
class SidecarConfig:
    port: int = DEFAULT_PORT
    poll_seconds: float = 0.5
    restore_timeout: float = 120.0
    margin_seconds: float = 2.0
    keep: int = 3
    best: KeepBest | None = None  # spec.checkpoint.keepBest: also kept in S3
    termination_path: str = "/dev/termination-log"
    mode: str = "sync"  # sync (S3) or report (a shared volume: only /status)
    expected_step: int | None = None  # the step the job's status says was saved
    start_without_storage: bool = False  # the user allows a fresh start when S3 is unreadable
    max_backoff: float = 30.0  # the longest wait between two restore attempts
    previous_attempt: int | None = None  # warm start: the attempt that may still be saving
    previous_until: datetime | None = None  # ... and until when it can (then restore anyway)
    role: Role | None = None  # this pod's node in a multi-node gang (None: a single pod)

    @classmethod
    def from_env(cls, env: PodEnv | None = None) -> SidecarConfig:
        env = PodEnv.from_env() if env is None else env
        return cls(
            port=_given(env.sidecar_port, DEFAULT_PORT),
            poll_seconds=_given(env.sync_poll_seconds, cls.poll_seconds),
            restore_timeout=_given(env.restore_timeout, cls.restore_timeout),
            keep=_given(env.keep, cls.keep),
            best=env.keep_best,
            termination_path=_given(env.termination_message_path, cls.termination_path),
            mode=_given(env.sidecar_mode, cls.mode),
            expected_step=env.expected_step,
            start_without_storage=bool(env.start_without_storage),
            max_backoff=_given(env.restore_max_backoff, cls.max_backoff),
            previous_attempt=env.previous_attempt,
            previous_until=env.previous_until,
            role=Role.from_env(env),
        )


T = TypeVar("T")


def _given(value: T | None, default: T) -> T:
    return default if value is None else value


def checkpoint_report(local: LocalStore, name: str, uri: str) -> SidecarReport | None:
    """What /status says of checkpoint ``name``: its manifest's step, epoch, time, metrics
    (None when the manifest is missing or names no valid step; bad optional fields dropped)."""
    try:
        with open(local.path(name) / layout.MANIFEST, "rb") as f:
            data = json.loads(f.read(MAX_MANIFEST_BYTES))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    fields = {
        "step": data.get("step"),
        "epoch": data.get("epoch"),
        "time": data.get("time"),
        "uri": uri,
        "metrics": finite_metrics(data.get("metrics")),
        "reason": data.get("reason"),
    }
    for dropped in ((), ("epoch", "time", "reason")):  # the whole manifest, else its step alone
        try:
            found = SidecarReport.model_validate({k: fields[k] for k in fields if k not in dropped})
        except ValidationError:
            continue
        return found if found.step is not None else None
    return None


class Reporter:
    """Keeps ``health.checkpoint`` on the newest durable step (reads a manifest per change)."""

    def __init__(self, health: Health, local: LocalStore, uri_of: Callable[[str], str]) -> None:
        self.health, self.local, self.uri_of = health, local, uri_of
        self.step: int | None = None

    def update(self, step: int | None) -> None:
        if step is None or step == self.step:
            return
        name = layout.step_dirname(step)
        found = checkpoint_report(self.local, name, self.uri_of(name))
        self.step = step
        self.health.checkpoint = found or SidecarReport(step=step, uri=self.uri_of(name))


def _writing(local: LocalStore) -> bool:
    return any(n.startswith(layout.TMP_PREFIX) for n in local.names())


def grace_cap(stop: StopRequest, settings: Settings, config: SidecarConfig) -> float | None:
    """The monotonic time no S3 call may run past: None until SIGTERM, then the grace
    deadline less the margin (kept for writing the termination message and exiting). The
    deadline is the trainer's when it left one (``podnotes``): a native sidecar's SIGTERM
    comes only once the trainer has exited, and both share one grace period."""
    if stop.first_at is None:
        return None
    root = Path(settings.checkpoint_dir)
    shared = podnotes.shared_deadline(root, stop.first_at, settings.grace_seconds)
    return min(stop.first_at + settings.grace_seconds, shared) - config.margin_seconds


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
    remote = S3Store.from_uri(settings.storage_uri)
    syncer = _syncer(local, remote, config)
    health = Health()
    reporter = Reporter(health, local, syncer.remote.file_uri)
    stop = StopRequest()
    stop.install()
    syncer.remote.cap = lambda: grace_cap(stop, settings, config)
    ended = _Ended(syncer, settings)
    server = _serve_when_free(health, config.port, stop)
    if server is None:  # stopped before the port was free: nothing restored, nothing said
        stop.uninstall()
        return 0
    try:
        waited = _wait_for_previous(syncer.remote, config, stop, settings.grace_seconds)
        restored = waited != "stopped" and restore_phase(
            syncer,
            health,
            stop,
            expected=None if config.start_without_storage else config.expected_step,
            timeout=config.restore_timeout,
            max_backoff=config.max_backoff,
        )
        reporter.update(syncer.durable_step)
        if restored:
            health.problem, health.state, health.started = syncer.problem, None, True
            readiness.mark(local.root)
            final_saved, note = _sync_until_stopped(
                syncer, health, stop, settings, config, reporter, ended
            )
        else:
            final_saved, note = False, "stopped before the checkpoint could be restored"
        if waited != "stopped":  # else the attempt before may still save: the next one waits
            ended.say(final_saved)
    finally:
        server.shutdown()
        stop.uninstall()
    health.state = "stopped"
    line = report(health, final_saved, note).to_json()
    log.info("spotrun sidecar: %s", line)
    _write_termination_message(config.termination_path, line)
    return 0


def _syncer(local: LocalStore, remote: S3Store, config: SidecarConfig) -> Syncer:
    role = config.role
    if role is None:
        return Syncer(local, remote, config.keep, config.best, integrity.load_framed)
    log.info("spotrun sidecar: node %d of a gang of %d", role.node, role.nnodes)
    return GangSyncer(local, remote, role, config.keep, config.best, integrity.load_framed)


def gang_fields(syncer: Syncer) -> dict[str, Any]:
    """What /status and the termination message add for a pod of a gang (pure)."""
    if not isinstance(syncer, GangSyncer):
        return {}
    fields: dict[str, Any] = {
        "nodeRank": syncer.role.node,
        "nnodes": syncer.role.nnodes,
        "partStep": syncer.part_step,
    }
    if syncer.role.node == 0:
        durable, part = syncer.durable_step, syncer.part_step
        fields["committed"] = part is not None and durable is not None and durable >= part
        fields["pending"] = syncer.pending and syncer.pending[:MAX_TEXT]
    return fields


def _serve_when_free(health: Health, port: int, stop: StopRequest) -> ProbeServer | None:
    """The probe server; while another process holds the port (a warm start where pods share
    one network, as on the process node: the old pod's sidecar), retry every 0.1 s instead of
    exiting into the kubelet's restart backoff. None when stopped meanwhile."""
    said = False
    while not stop.requested:
        try:
            return serve(health, port)
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            if not said:
                log.info(
                    "spotrun sidecar: port %d is in use (a previous pod's sidecar on a "
                    "shared network?): retrying until it is free",
                    port,
                )
                said = True
        stop.changed.wait(0.1)
    return None


def _wait_for_previous(
    remote: S3Store, config: SidecarConfig, stop: StopRequest, grace: float
) -> handoff.Why:
    """Warm start: wait until the attempt before this one has ended (its marker, or its
    deadline), so the restore below sees its final checkpoint. No previous attempt: go on."""
    attempt = config.previous_attempt
    if attempt is None:
        return "marker"
    log.info(
        "spotrun sidecar: attempt %d may still be saving (until %s): waiting for its final save",
        attempt,
        config.previous_until.isoformat() if config.previous_until else "its marker",
    )
    until = config.previous_until
    return handoff.wait_for_previous(
        lambda: handoff.read(remote, attempt),
        attempt,
        until,
        stop.changed.wait,
        not_before=handoff.notice_began(until, grace),
    )[0]


class _Ended:
    """This attempt's attempt-ended marker (``handoff``), written once: as soon as the
    trainer's exit note names a step S3 holds (a next attempt started beside this one restores
    at once, even if this pod then overruns its grace period), else when the sidecar stops.
    A failure is logged (the next attempt waits for its deadline instead)."""

    def __init__(self, syncer: Syncer, settings: Settings) -> None:
        self.syncer, self.settings, self.said = syncer, settings, False

    def say(self, final_saved: bool) -> None:
        attempt = self.settings.attempt
        if self.said or attempt is None or attempt < 1:
            return
        if isinstance(self.syncer, GangSyncer) and self.syncer.role.node != 0:
            return  # the gang's marker is node 0's: it knows what was committed
        ended = handoff.Ended(attempt, self.syncer.durable_step, final_saved)
        job = f"{self.settings.namespace}/{self.settings.job}" if self.settings.job else None
        try:
            handoff.write(self.syncer.remote, ended, job)
        except StoreError as e:
            log.warning("spotrun sidecar: cannot write attempt %d's ended marker: %s", attempt, e)
            return
        self.said = True


Verdict = Literal["saved", "gone", "wait"]


def after_stop(
    note: dict[str, Any] | None,
    trainer_alive: bool,
    writing: bool,
    synced: bool,
    durable_step: int | None,
) -> Verdict:
    """What the sidecar does after SIGTERM, from what it sees now (pure).

    saved: the trainer left its exit note and the step it names is in S3 (or it names none).
    gone: no note, no trainer holds its lock and S3 holds the newest local checkpoint: the
    trainer ended without a final save (killed, crashed, or never opened a Checkpointer).
    wait: anything else: a trainer at work (however slowly: load is no reason to give up),
    a temp folder it writes, an upload to finish. The caller bounds the wait by the grace
    deadline, the one limit the platform sets.
    """
    if note is not None:
        if writing and trainer_alive:
            return "wait"
        wanted = note.get("step")
        if not isinstance(wanted, int) or isinstance(wanted, bool):
            return "saved"
        return "saved" if durable_step is not None and durable_step >= wanted else "wait"
    if trainer_alive or not synced:
        return "wait"
    return "gone"


def _sync_until_stopped(
    syncer: Syncer,
    health: Health,
    stop: StopRequest,
    settings: Settings,
    config: SidecarConfig,
    reporter: Reporter,
    ended: _Ended,
) -> tuple[bool, str | None]:
    root = syncer.local.root
    noted: int | None = None  # the durable step the trainer was told of (its upload times)
    while True:
        # the lock before the note: a trainer writes its note, then lets go of the lock
        alive = liveness.held(root)
        synced = syncer.sync_once()
        noted = podnotes.note_durable(root, syncer.done_step, syncer.durable_at, noted)
        health.problem = syncer.problem
        health.gang = gang_fields(syncer)
        reporter.update(syncer.durable_step)
        cap = grace_cap(stop, settings, config)
        verdict = after_stop(
            marker.read(root), alive, _writing(syncer.local), synced, syncer.done_step
        )
        if verdict == "saved":  # the trainer is done and its final checkpoint is in S3
            ended.say(True)
        if cap is None:
            stop.changed.wait(config.poll_seconds)
            continue
        if verdict == "saved":
            return True, None
        if verdict == "gone":
            return False, "the trainer exited without saving a final checkpoint"
        if time.monotonic() >= cap:
            why = "; ".join(w for w in (syncer.pending, syncer.problem) if w)
            why = why or "final upload unfinished"
            return False, f"grace deadline reached: {why}"
        time.sleep(min(config.poll_seconds, max(cap - time.monotonic(), 0.0)))


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
            stop.changed.wait(config.poll_seconds)
    finally:
        server.shutdown()
        stop.uninstall()
    exit_note = marker.read(local.root) or {}
    wanted, step = exit_note.get("step"), reporter.step
    saved = bool(exit_note) and (not isinstance(wanted, int) or (step or -1) >= wanted)
    health.state = "stopped"
    note = None if exit_note else "the trainer left no exit note"
    line = report(health, saved, note).to_json()
    log.info("spotrun sidecar: %s", line)
    _write_termination_message(config.termination_path, line)
    return 0


def _write_termination_message(path: str, line: str) -> None:
    try:
        Path(path).write_text(line)
    except OSError as e:
        log.warning("spotrun sidecar: cannot write the termination message to %s: %s", path, e)
