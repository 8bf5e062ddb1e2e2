"""``Checkpointer``: restore at start, save periodically in the background, save on SIGTERM.

    with Checkpointer(model=model, optimizer=opt, loader=loader, interval_steps=50) as ckpt:
        ckpt.restore()
        for epoch in loader.epochs(20):
            for x, y in loader:
                ...  # forward, backward, optimizer.step()
                ckpt.step(metrics={"loss": loss.item()})

Every checkpoint holds the state of one step boundary, the last ``step()``: what runs after it
(evaluation, ``sched.step()``, changes to ``ckpt.state``) goes into the next one, whenever the
save is written. Periodic saves stall training only for the in-memory snapshot; the write runs
in a background thread. On SIGTERM the next ``step()`` saves and exits 0; with
``save_at_once=False`` or ``SPOTRUN_SAVE_AT_ONCE=0`` (opt-in) training goes on through the
notice (``SPOTRUN_GRACE_SECONDS``) while there is time, and the ``step()`` at the last safe
moment saves (``notice``: the deadline less this run's measured save + upload times, with a
margin, and one step; with nothing measured yet the next ``step()`` saves). So does Ctrl-C
(SIGINT) by default, or with ``on_interrupt="raise"`` it saves and raises KeyboardInterrupt
from that ``step()``. A second signal, or no step boundary by the save's deadline, saves at
once from a watchdog thread. An exception escaping the ``with`` block saves the last consistent
state, then propagates; one escaping ``restore()`` (or any before the first ``step()`` after
it) saves nothing. Neither saves inside a parameter update (``optimizer.step()``, or a
hand-written update in ``with ckpt.updating():``) or after one that no ``step()`` followed:
that would pair new weights with the old step; they log that they refused and why.

Under torch.distributed with 2+ ranks the Checkpointer is one rank of a gang (``gang``): each
``step()`` all-reduces the stop flag, so every rank saves the same step when any rank got the
signal, and every rank writes its part of one checkpoint (``gangsave``; ``shards=`` for state
that differs per rank); restore agrees on the newest checkpoint every rank loads (``gangread``).
A gang cannot save without all its ranks: the watchdog and an escaping exception save nothing.

A save that cannot be written at the end of a run (the final one, the one on SIGTERM) is
logged with its cause and the newest durable step, and the run still ends normally: the
training finished, and the exit note tells the sidecar which step is durable. A full disk makes
room by deleting older checkpoints early (``room``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import torch

from . import (
    codec,
    distributed,
    fastexit,
    gangread,
    gangsave,
    gangworld,
    liveness,
    logsetup,
    marker,
    notice,
    podnotes,
    reader,
    readiness,
    retention,
    writer,
)
from .components import Components, Stateful
from .direct import DirectUploader
from .env import Settings
from .gang import Gang
from .localstore import LocalStore
from .podenv import PodEnv
from .progress import ProgressLog
from .prune import prune
from .room import RoomKeeper
from .scriptstate import ScriptState
from .signals import StopRequest
from .snapshot import SnapshotBuffer
from .stale import remove_stale_tmp
from .store import StoreError

log = logging.getLogger("spotrun")
T = TypeVar("T")
INTERRUPT_MODES = ("exit", "raise")


class InconsistentStateError(RuntimeError):
    """A save asked for after the parameters changed since the last ``step()``."""


class Checkpointer:
    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        model: torch.nn.Module,
        optimizer: Stateful | None = None,
        scheduler: Stateful | None = None,
        scaler: Stateful | None = None,
        loader: Stateful | None = None,
        extras: dict[str, Any] | None = None,
        shards: dict[str, Stateful] | None = None,
        interval_steps: int | None = None,
        interval_seconds: float | None = None,
        keep: int = 3,
        keep_best: retention.KeepBest | None = None,
        grace_seconds: float | None = None,
        save_at_once: bool | None = None,
        exit_on_preemption: bool = True,
        handle_signals: bool = True,
        on_interrupt: Literal["exit", "raise"] = "exit",
        log_level: str | int | None = None,
    ) -> None:
        logsetup.configure(log_level)
        if on_interrupt not in INTERRUPT_MODES:
            raise ValueError(
                f"on_interrupt={on_interrupt!r}: use 'exit' (Ctrl-C saves and exits 0) or "
                "'raise' (Ctrl-C saves, then raises KeyboardInterrupt at the step boundary)"
            )
        env = PodEnv.from_env()
        settings = Settings.from_pod_env(env)
        if interval_steps is None and interval_seconds is None:
            # the script chose no interval: the job's spec.checkpoint does (through the env)
            interval_steps, interval_seconds = settings.interval_steps, settings.interval_seconds
        if interval_steps is not None and interval_steps < 1:
            raise ValueError(f"interval_steps must be >= 1, got {interval_steps}")
        if interval_seconds is not None and interval_seconds <= 0:
            raise ValueError(f"interval_seconds must be > 0, got {interval_seconds}")
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        if interval_seconds is not None and distributed.world_size() > 1:
            raise ValueError(
                "interval_seconds would let ranks decide to save at different steps and meet at "
                "different barriers under DDP; use interval_steps"
            )
        self.store = LocalStore(directory if directory is not None else settings.checkpoint_dir)
        # torch.distributed with 2+ ranks: a gang (every rank is created at the same time)
        self._gang = Gang.start(shards)
        self._peer_stop = False  # the gang agreed to stop; this rank got no signal itself
        # the very dict passed, even an empty one: the script may fill it later
        self.components = Components(
            model, optimizer, scheduler, scaler, loader, extras if extras is not None else {}
        )
        self.state: ScriptState = self.components.state
        self.on_interrupt = on_interrupt
        self.interval_steps = interval_steps
        self.interval_seconds = interval_seconds
        self.keep = keep
        self.keep_best = keep_best
        self.grace_seconds = settings.grace_seconds if grace_seconds is None else grace_seconds
        # the notice is used only when its length is known (a laptop's kill saves at once)
        self._grace_known = grace_seconds is not None or env.grace_seconds is not None
        # opt-in: a platform may kill before the pod's grace ends (GKE spot: 15 s), and a
        # suspend is a delete too; training on through the notice needs a notice one trusts
        default = True if env.save_at_once is None else env.save_at_once
        self.save_at_once = default if save_at_once is None else save_at_once
        self._sidecar_uploads = settings.upload == "sidecar" and bool(settings.storage_uri)
        self._measured = notice.Measurements()
        self._plan: notice.Plan | None = None  # what to do with the notice of the signal
        self._plan_lock = threading.Lock()
        self._notice_step = 0  # the step the signal came at
        self._stop_saving = False  # the training thread has begun the save on a stop
        self._save_started = 0.0
        self.exit_on_preemption = exit_on_preemption
        self.global_step = 0
        self.durable_step: int | None = None
        self.last_save_seconds = 0.0
        self._metrics: dict[str, float] = {}
        self._last_save_at = time.monotonic()
        self._saved_step: int | None = None
        self._stepped = False  # step() ran since the last restore() began: there is new work
        self._unsaved: int | None = None  # the step a last save (final, preemption) failed on
        self._room = RoomKeeper(self.store, keep, keep_best)
        self._buffer = SnapshotBuffer()
        self._lock = threading.RLock()  # one save at a time; guards the buffer
        self._write: threading.Thread | None = None
        self.write_error: BaseException | None = None  # the last background write's failure
        self._in_optimizer_step = False
        self._updating = 0  # depth of ``with ckpt.updating():`` blocks running
        self._interrupted_at: int | None = None  # the step a Ctrl-C raised at (``on_interrupt``)
        self._dirty: str | None = None  # how the parameters moved since the last step boundary
        self._progress = ProgressLog(settings.progress_file)
        self._stop = StopRequest()
        self._closed = False
        self._alive = liveness.hold(self.store.root)  # the sidecar sees a trainer at work
        self._copied = threading.Event()
        self._copied.set()
        self._hooks = self._watch_optimizer(optimizer)
        self._uploader = direct_uploader(settings, self.store, keep, keep_best)
        if self._uploader is not None and self._gang is not None:
            raise ValueError(
                f"SPOTRUN_STORAGE_URI={settings.storage_uri!r} with direct upload: a gang's "
                "checkpoint is uploaded by each pod's sidecar (SPOTRUN_UPLOAD=sidecar), whose "
                "node 0 commits it once every node's part is there"
            )
        self._mark_boundary()
        self._watchdog_thread: threading.Thread | None = None
        if handle_signals and self._stop.install():
            self._watchdog_thread = threading.Thread(
                target=self._watchdog, name="spotrun-watchdog", daemon=True
            )
            self._watchdog_thread.start()

    # -- the public surface -------------------------------------------------------------

    @property
    def stop_requested(self) -> bool:
        return self._stop.requested

    def restore(self) -> int:
        """Load the newest valid checkpoint; returns its step (0 on a fresh start).

        Invalid ones (unparseable or wrong manifest, missing, undecodable or unsafe files: see
        ``reader``) are skipped, one warning each. A checkpoint of another model
        (CheckpointMismatchError) or of a newer format (UnknownFormatError) raises instead:
        falling back past it would silently lose progress.
        """
        self._stepped = False  # a restore that raises leaves nothing worth saving
        started = time.monotonic()
        # under a sidecar: its restore is done first; a SIGTERM meanwhile ends the process at
        # once (nothing restored, nothing to save), so the sidecar behind it gets its own
        # SIGTERM while there is time to say so, not at the grace end
        if readiness.wait(self.store.root, stopped=lambda: self._stop.requested) is None:
            log.info("spotrun: stopped before the sidecar's restore was done; exiting 0")
            fastexit.arm()
            sys.exit(0)
        marker.clear(self.store.root)
        remove_stale_tmp(self.store.dir)
        if self._uploader is not None:
            try:
                self._uploader.syncer.restore_newest()
            except StoreError:  # the syncer logged the cause
                log.warning("spotrun: continuing with local checkpoints only")
        if self._gang is not None:
            found = self._gang.restore(self.store)
            loaded = None if found is None else found.loaded
        else:
            loaded = reader.newest_valid(self.store)
        if loaded is None:
            log.info("spotrun: no checkpoint in %s, starting from scratch", self.store.dir)
            self._progress.event("start", 0)
            return 0
        where = self.store.file_uri(loaded.name)
        if self._gang is not None and found is not None:
            self.components.apply(found.state, where)
            self._gang.apply_rank(found, where)
        else:
            gangread.check_world(loaded.manifest, gangworld.SINGLE, where)
            self.components.apply(reader.decode_state(loaded), where)
        self.global_step = self._saved_step = self.durable_step = loaded.step
        self._metrics = dict(loaded.manifest.metrics)
        self._mark_boundary()
        seconds = time.monotonic() - started
        log.info(
            "spotrun: restored step %d (epoch %d) from %s in %.2fs",
            loaded.step,
            loaded.manifest.epoch,
            self.store.file_uri(loaded.name),
            seconds,
        )
        self._progress.event("restore", loaded.step, seconds=seconds)
        return loaded.step

    def step(self, metrics: dict[str, float] | None = None) -> bool:
        """Call once after each optimizer step: the step boundary. Returns True when the run
        should stop.

        Copies the small state (scheduler, scaler, loader, extras, ``state``, loop positions,
        RNG) as it is now: every checkpoint until the next ``step()`` holds it. Saves when an
        interval is due (in the background) or a stop signal arrived (at once; then exits 0
        unless ``exit_on_preemption=False``; Ctrl-C with ``on_interrupt="raise"`` raises
        KeyboardInterrupt here instead).
        """
        self.global_step += 1
        self._stepped = True
        self._measured.stepped(time.monotonic())
        if metrics:
            self._metrics.update({k: float(v) for k, v in metrics.items()})
        self._mark_boundary()
        self._progress.event("step", self.global_step, epoch=self._epoch())
        stop = self._stop.requested
        if self._gang is not None:  # every rank learns a stop at the same step (one all-reduce)
            stop = self._gang.agree_stop(stop)
            self._peer_stop = stop and not self._stop.requested
        if stop:
            if (
                self._stop.requested
                and self.on_interrupt == "raise"
                and self._stop.signum == signal.SIGINT
            ):
                self._raise_interrupt()
            if not self._peer_stop and self._training_on():
                return False
            self._save_on_stop()
            return True
        if self._due():
            self.save(reason="periodic", wait=False)
        return False

    def range(
        self, start: int, stop: int | None = None, step: int = 1, *, name: str | None = None
    ) -> Iterator[int]:
        """``range(start, stop, step)`` that a restore continues after the last item a
        ``ckpt.step()`` completed (see ``positions``: the innermost loop's item is completed
        by the ``step()`` in it, outer loops resume the item in progress). ``name`` tells
        loops apart (default: the file and line of the call)."""
        if stop is None:
            start, stop = 0, start
        return self.components.positions.range(start, stop, step, name or _call_site())

    def iterate(self, iterable: Iterable[T], *, name: str | None = None) -> Iterator[T]:
        """Iterate ``iterable``; a restore skips the items consumed up to the last completed
        one (as ``range``). The iterable must yield the same items on every run."""
        return self.components.positions.iterate(iterable, name or _call_site())

    @contextmanager
    def updating(self) -> Iterator[None]:
        """Mark a hand-written parameter update (no torch optimizer): no save runs inside it,
        and none after it until the next ``step()`` (the weights are no step's)."""
        self._copied.wait()  # a snapshot still copying the parameters finishes first
        self._updating += 1
        try:
            yield
        except BaseException:
            self._dirty = "an exception left a parameter update (with ckpt.updating()) half done"
            raise
        else:
            self._dirty = self._dirty or "a ckpt.updating() block changed the parameters"
        finally:
            self._updating -= 1

    def record(self, **metrics: float) -> None:
        """Metrics (e.g. a validation score) written into the next checkpoint's manifest."""
        self._metrics.update({k: float(v) for k, v in metrics.items()})

    def save(self, reason: str = "manual", wait: bool = True) -> None:
        """Snapshot the state at the last step boundary and write it (in the background
        unless ``wait``)."""
        with self._lock:
            self.wait()
            self._check_consistent()
            started = self._save_started = time.monotonic()
            self._copied.clear()  # an update starting now waits until the parameters are copied
            try:
                if self._gang is not None:
                    write, copy_rest = self._gang_snapshot(reason, deferred=not wait)
                else:
                    image, size, structure, copy_rest = self._snapshot(deferred=not wait)
                    write = partial(
                        self._write_checkpoint,
                        self.global_step,
                        self._epoch(),
                        image,
                        size,
                        structure,
                        reason,
                    )
                if wait:
                    copy_rest()
                    self._check_consistent()  # no update slipped in while copying
            except BaseException:
                self._copied.set()
                raise
            if wait:
                self._copied.set()
            self._last_save_at = time.monotonic()
            self._saved_step = self.global_step
            log.debug(
                "spotrun: snapshot of step %d took %.3fs",
                self.global_step,
                self._last_save_at - started,
            )
            if wait:
                write()
            else:
                self._write = threading.Thread(
                    target=self._write_in_background,
                    args=(copy_rest, write, self.global_step),
                    name="spotrun-writer",
                )
                self._write.start()

    def wait(self) -> None:
        """Block until the background write in flight (if any) is durable."""
        write = self._write
        if write is not None:
            write.join()
            self._write = None

    def close(self) -> None:
        """Save a final checkpoint if steps were taken since the last, wait, restore signals."""
        if self._closed:
            return
        try:
            self.wait()
            # also retries a failed background write, not a last save that failed already
            if self._unsaved != self.global_step and self._has_unsaved_work():
                self._save_last("final")
            self._finish()
        finally:
            self._release()

    def _finish(self) -> None:
        """Wait for the local write, then (direct mode) for S3; tell a sidecar we are done."""
        self.wait()
        if self._uploader is not None:
            if self._stop.first_at is not None:
                timeout = self.grace_seconds - (time.monotonic() - self._stop.first_at) - 1.0
            else:
                timeout = final_upload_timeout()
            where = self._uploader.syncer.remote.uri
            if self._uploader.flush(self.durable_step, max(timeout, 0.0)):
                log.info(
                    "spotrun: final checkpoint (step %s) is durable in %s", self.durable_step, where
                )
            else:
                log.error(
                    "spotrun: final checkpoint (step %s) did NOT reach %s before the deadline "
                    "(%.0fs): %s; it is only on local disk",
                    self.durable_step,
                    where,
                    timeout,
                    self._uploader.syncer.problem or "still uploading",
                )
            self._uploader.stop()
        if self._gang is not None and self._gang.world.local_rank != 0:
            return  # one exit note per node (pod): its local rank 0's
        reason = "closed" if self._unsaved is None else f"closed; step {self._unsaved} not saved"
        try:
            marker.write(self.store.root, self.durable_step, reason)
        except OSError as e:
            log.error(
                "spotrun: cannot write the exit note in %s: %s; a sidecar will wait for its "
                "quiet period, then upload step %s",
                self.store.root,
                e,
                self.durable_step,
            )

    def _release(self) -> None:
        self._closed = True
        self._stop.uninstall()
        self._stop.changed.set()  # wakes the watchdog, which sees the run closed and returns
        watchdog = self._watchdog_thread
        if watchdog is not None and watchdog is not threading.current_thread():
            watchdog.join(timeout=5.0)
        for hook in self._hooks:
            hook.remove()
        self._progress.close()
        liveness.release(self._alive)  # after the exit note: see liveness.py

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or isinstance(exc, SystemExit) or self._raised_here(exc):
            self.close()
            return
        try:
            self._emergency_save(exc)
        finally:
            self._release()

    # -- internals ----------------------------------------------------------------------

    def _raised_here(self, exc: BaseException) -> bool:
        """The KeyboardInterrupt ``step()`` raised after saving, with no step since."""
        return isinstance(exc, KeyboardInterrupt) and self._interrupted_at == self.global_step

    def _epoch(self) -> int:
        loader_state = self._boundary.small.get("loader")
        return int(loader_state["epoch"]) if isinstance(loader_state, dict) else 0

    def _due(self) -> bool:
        if self.interval_steps and self.global_step % self.interval_steps == 0:
            return True
        return bool(
            self.interval_seconds and time.monotonic() - self._last_save_at >= self.interval_seconds
        )

    def _mark_boundary(self) -> None:
        """Copy the small state at this step boundary (``Components.boundary``)."""
        self._boundary = self.components.boundary()
        self._dirty = None

    def _check_consistent(self) -> None:
        problem = self._inconsistency()
        if problem is not None:
            raise InconsistentStateError(
                f"cannot save step {self.global_step}: {problem}; save after ckpt.step(), "
                "before the next update"
            )

    def _inconsistency(self) -> str | None:
        """Why the state is not that of the last step boundary, or None when it is."""
        if self._in_optimizer_step:
            return "inside optimizer.step()"
        if self._updating:
            return "inside a parameter update (with ckpt.updating())"
        if self._dirty:
            return f"{self._dirty} after step {self.global_step} and no ckpt.step() followed"
        changed = self._boundary.changed()
        if changed is not None:
            return f"{changed} was changed in place after step {self.global_step}"
        return None

    def _snapshot(self, deferred: bool) -> tuple[memoryview, int, bytes, Callable[[], None]]:
        state = self.components.capture(self._boundary, self.global_step, self._epoch())
        structure, tensors = codec.encode(state)
        later = self._deferrable(tensors) if deferred else frozenset()
        _, _, copy_rest = self._buffer.take(tensors, later)
        image, size = self._buffer.file_image()
        return image, size, json.dumps(structure).encode(), copy_rest

    def _deferrable(self, tensors: dict[str, torch.Tensor]) -> frozenset[str]:
        """Keys only ``optimizer.step()`` changes: parameters and optimizer state (and only
        when the optimizer is watched, so its step can wait for the copy)."""
        if not self._hooks:
            return frozenset()
        params = {f"model/{name}" for name, _ in self.components.model.named_parameters()}
        return frozenset(k for k in tensors if k in params or k.startswith("optimizer/state/"))

    def _gang_snapshot(
        self, reason: str, deferred: bool
    ) -> tuple[Callable[[], None], Callable[[], None]]:
        """This rank's share of a gang save: the top-level payload on global rank 0 (as a
        single process's), its own part on every rank. Returns (write, copy_rest)."""
        assert self._gang is not None
        top: gangsave.Payload | None = None
        copy_rest: Callable[[], None] = _nothing
        if self._gang.world.rank == 0:
            image, size, structure, copy_rest = self._snapshot(deferred)
            top = gangsave.Payload(image, size, structure)
        mine = self._gang.rank_payload(self._boundary.small["rng"], self.global_step)
        save = gangsave.GangSave(
            self.global_step, self._epoch(), dict(self._metrics), reason, self._gang.mode
        )
        return partial(self._write_gang_checkpoint, save, top, mine), copy_rest

    def _write_in_background(
        self, copy_rest: Callable[[], None], write: Callable[[], None], step: int
    ) -> None:
        """The writer thread: a failure is logged and kept in ``write_error``, never lost."""
        try:
            try:
                copy_rest()
            finally:
                self._copied.set()  # the optimizer may step again
            write()
        except BaseException as e:  # noqa: B036 (a thread must not die silently)
            self.write_error = e
            log.error("spotrun: saving step %d to %s failed: %s", step, self.store.dir, e)

    def _write_gang_checkpoint(
        self, save: gangsave.GangSave, top: gangsave.Payload | None, mine: gangsave.Payload
    ) -> None:
        assert self._gang is not None
        started = time.monotonic()
        folder = self._gang.write(self.store, save, top, mine)
        self._saved(save.step, save.reason, folder, started)

    def _write_checkpoint(
        self,
        step: int,
        epoch: int,
        tensor_file: memoryview,
        tensor_size: int,
        structure: bytes,
        reason: str,
    ) -> None:
        started = time.monotonic()
        write = partial(
            writer.write,
            self.store,
            step=step,
            epoch=epoch,
            tensor_file=tensor_file,
            tensor_size=tensor_size,
            structure=structure,
            metrics=dict(self._metrics),
            reason=reason,
        )
        folder = self._room.write(step, write)
        self._saved(step, reason, folder, started)

    def _saved(self, step: int, reason: str, folder: Path, started: float) -> None:
        """Bookkeeping once the checkpoint of ``step`` is committed; retention after it."""
        self.last_save_seconds = time.monotonic() - started
        self._measured.saved(time.monotonic() - self._save_started, step, time.time())
        self.durable_step = step
        self.write_error = None
        if self._uploader is not None:
            self._uploader.notify()
        self._learn_durable()
        self._progress.event("saved", step, reason=reason, seconds=self.last_save_seconds)
        log.info(
            "spotrun: saved step %d (%s) to %s in %.2fs",
            step,
            reason,
            folder,
            self.last_save_seconds,
        )
        if reason not in ("preemption", "emergency"):  # in a hurry: prune next time
            try:
                self._apply_retention()
            except OSError as e:
                log.warning(
                    "spotrun: could not delete old checkpoints in %s: %s", self.store.dir, e
                )

    def _apply_retention(self) -> None:
        if self._gang is not None:
            self._gang.prune(self.store, self.keep, self.keep_best)
        else:
            prune(self.store, self.keep, self.keep_best)

    def _save_on_stop(self) -> None:
        signame = _signal_name(self._stop.signum)
        if self._peer_stop:
            signame = "a stop agreed by the gang (another rank got a signal)"
        self._stop_saving = True  # the watchdog's deadline passing now leaves the save to us
        self._stop.changed.set()  # (and one waiting for this step boundary stops waiting)
        first, plan = self._stop.first_at, self._plan
        if first is not None and plan is not None and plan.trains_on:
            log.info(
                "spotrun: %s %.1f s ago: trained %d more steps during the notice; saving step "
                "%d, deadline in %.1f s",
                signame,
                time.monotonic() - first,
                self.global_step - self._notice_step,
                self.global_step,
                plan.deadline - (time.monotonic() - first),
            )
        else:
            log.info(
                "spotrun: %s received, saving step %d before exiting", signame, self.global_step
            )
        self._save_last("preemption")
        if self.exit_on_preemption:
            self.close()
            log.info("spotrun: step %s is durable; exiting 0", self.durable_step)
            fastexit.arm()
            sys.exit(0)

    def _training_on(self) -> bool:
        """At a step boundary after the first signal: True while one more step still leaves
        room for the save (``notice``); never after a second signal."""
        plan, first = self._notice_plan(), self._stop.first_at
        if first is None or self._stop.count > 1:
            return False
        return plan.keep_training(time.monotonic() - first)

    def _notice_plan(self) -> notice.Plan:
        """The plan for the signal received: made once, by the first thread to ask (the
        watchdog, woken by the signal, or the next ``step()``), and logged."""
        with self._plan_lock:
            if self._plan is None:
                self._plan = self._make_plan()
            return self._plan

    def _make_plan(self) -> notice.Plan:
        self._learn_durable()
        uploads = self._uploader is not None or self._sidecar_uploads
        writing = self._write is not None and self._write.is_alive()
        costs = self._measured.costs(uploads, writing)
        plan = notice.plan(self.grace_seconds, costs, self._at_once_reason())
        first = self._stop.first_at if self._stop.first_at is not None else time.monotonic()
        self._notice_step = self.global_step
        signame = _signal_name(self._stop.signum)
        log.info("spotrun: %s", plan.describe(signame, time.monotonic() - first))
        if self._stop.signum == signal.SIGTERM:
            self._publish_deadline(first)
        return plan

    def _at_once_reason(self) -> str | None:
        if self._stop.signum == signal.SIGINT:
            return "Ctrl-C stops now"
        if self.save_at_once:
            return "save_at_once (the default; SPOTRUN_SAVE_AT_ONCE=0 trains on through the notice)"
        if distributed.world_size() > 1:
            return "under DDP each rank would pick its own step from its own measurements"
        if not self._grace_known:
            return "the grace period is unknown: set SPOTRUN_GRACE_SECONDS or grace_seconds="
        return None

    def _publish_deadline(self, first: float) -> None:
        """Tell a sidecar when the grace period ends (``podnotes``: one deadline for both)."""
        now = time.time()
        try:
            podnotes.write_deadline(
                self.store.root, now + first + self.grace_seconds - time.monotonic(), now
            )
        except OSError as e:
            log.warning("spotrun: cannot leave the deadline for a sidecar: %s", e)

    def _learn_durable(self) -> None:
        """Which step is durable in S3 and since when: the direct uploader's, or the note a
        sidecar leaves (``podnotes``); each gives the upload time of a step saved here."""
        if self._uploader is not None:
            syncer = self._uploader.syncer
            step, at = syncer.durable_step, syncer.durable_at
            if step is not None and at is not None:
                self._measured.durable(step, at)
        elif self._sidecar_uploads:
            found = podnotes.read_durable(self.store.root)
            if found is not None:
                self._measured.durable(*found)

    def _boundary_saves(self) -> bool:
        """The watchdog's deadline passed while training on, between ``optimizer.step()`` and
        its ``step()`` (the weights are no step's: a save now would be refused). Wait for that
        ``step()``, which saves, while a save begun then still fits the grace period; True
        when it came. A second signal ends the wait."""
        plan, first = self._plan, self._stop.first_at
        if plan is None or not plan.trains_on or first is None or self._inconsistency() is None:
            return False
        last = first + plan.deadline - notice.RESERVE_SECONDS - (plan.cost or 0.0)
        while not self._stop_saving and self._stop.count < 2 and not self._closed:
            left = last - time.monotonic()
            if left <= 0:
                break
            self._stop.changed.wait(left)
            self._stop.changed.clear()
        return self._stop_saving

    def _until_save_by(self) -> float:
        """Seconds from now until the watchdog must save at once (the plan's ``save_by``)."""
        first = self._stop.first_at
        elapsed = time.monotonic() - first if first is not None else 0.0
        return max(self._notice_plan().save_by - elapsed, 0.0)

    def _raise_interrupt(self) -> None:
        """Ctrl-C with ``on_interrupt="raise"``: save this step, stand the watchdog down (the
        script's own ``except KeyboardInterrupt`` may take its time), raise in the main thread."""
        log.info(
            "spotrun: Ctrl-C (SIGINT): saving step %d, then raising KeyboardInterrupt",
            self.global_step,
        )
        self._save_last("interrupt")
        self._interrupted_at = self.global_step
        self._plan, self._stop_saving = None, False  # a later signal is planned afresh
        self._stop.reset()
        raise KeyboardInterrupt(f"Ctrl-C; step {self.durable_step} is saved")

    def _has_unsaved_work(self) -> bool:
        return unsaved_work(self._stepped, self.global_step, self.durable_step)

    def _save_last(self, reason: str) -> None:
        """A save at the end of the run: a failure is logged, never fails the finished run;
        a save inside or after an update no ``step()`` followed is refused (and logged)."""
        problem = self._inconsistency()
        if problem is not None:
            self._unsaved = self.global_step
            log.error(
                "spotrun: refusing the %s save of step %d: %s. %s",
                reason,
                self.global_step,
                problem,
                durable_note(self.durable_step),
            )
            return
        try:
            self.save(reason=reason, wait=True)
        except (OSError, InconsistentStateError) as e:
            self._unsaved = self.global_step
            log.error(
                "spotrun: the %s checkpoint of step %d could NOT be written to %s: %s; %s. "
                "The run still ends normally",
                reason,
                self.global_step,
                self.store.dir,
                e,
                durable_note(self.durable_step),
            )

    def _emergency_save(self, exc: BaseException) -> None:
        name = type(exc).__name__
        if self._gang is not None:
            log.error(
                "spotrun: %s escaped on rank %d; a gang saves only at a step boundary every rank "
                "reaches, so nothing is saved: the newest complete checkpoint is step %s",
                name,
                self._gang.world.rank,
                self.durable_step,
            )
            return
        if not self._stepped:
            log.error(
                "spotrun: %s escaped before any training step (since restore() began); "
                "nothing is saved, the checkpoints in %s are left as they are",
                name,
                self.store.dir,
            )
            return
        self.wait()
        problem = self._inconsistency()
        if problem is not None:
            log.error(
                "spotrun: %s escaped %s; refusing to save half an update: the last consistent "
                "state is the checkpoint of step %s",
                name,
                problem,
                self.durable_step,
            )
            return
        if not self._has_unsaved_work():
            log.error("spotrun: %s escaped; step %d is durable already", name, self.global_step)
            return
        log.error(
            "spotrun: %s escaped the training loop; saving step %d first", name, self.global_step
        )
        try:
            self.save(reason="emergency", wait=True)
        except (OSError, RuntimeError) as e:
            log.error("spotrun: emergency save failed: %s", e)

    def _watchdog(self) -> None:
        """After the first signal: at a second signal or the deadline, save at once (unless
        the stop was handled meanwhile: Ctrl-C raised at a step boundary)."""
        while True:
            self._stop.changed.wait()
            self._stop.changed.clear()
            if self._closed:
                return
            if not self._stop.requested:
                continue
            if self._stop.count < 2:  # a second signal set before the clear() above is not lost
                saving = self._stop_saving  # then only a second signal is waited for
                self._stop.changed.wait(timeout=None if saving else self._until_save_by())
            if self._closed:
                return
            if self._stop.requested:
                if self._stop.count < 2 and (self._stop_saving or self._boundary_saves()):
                    continue  # the training thread saves at its step boundary
                break
        self._save_at_once()

    def _save_at_once(self) -> None:
        if self._gang is not None:
            log.error(
                "spotrun: no step boundary reached in time (or a second signal); a gang saves "
                "only at a step boundary every rank reaches, so rank %d exits without a save: "
                "the newest complete checkpoint is step %s",
                self._gang.world.rank,
                self.durable_step,
            )
            fastexit.arm()
            os._exit(0)
        log.warning("spotrun: no step boundary reached in time; saving at once")
        with self._lock:
            if self._closed:
                return
            if self._stepped and self._saved_step != self.global_step:
                self._save_last("preemption")
            self._finish()
        log.info("spotrun: durable step is %s; exiting 0", self.durable_step)
        os._exit(0)

    def _watch_optimizer(self, optimizer: Stateful | None) -> list[Any]:
        if not isinstance(optimizer, torch.optim.Optimizer):
            return []

        def pre(*_: Any) -> None:
            self._copied.wait()  # parameters may change only once the snapshot has them
            self._in_optimizer_step = True

        def post(*_: Any) -> None:
            self._in_optimizer_step = False
            self._dirty = "optimizer.step() changed the parameters"

        return [optimizer.register_step_pre_hook(pre), optimizer.register_step_post_hook(post)]


def unsaved_work(stepped: bool, global_step: int, durable_step: int | None) -> bool:
    """True when the state holds training no durable checkpoint has: a step ran since the last
    restore began (after a restore that raised, the state is neither a checkpoint's nor newly
    trained) and the newest durable step is another one."""
    return stepped and durable_step != global_step


def durable_note(durable_step: int | None) -> str:
    """What a restart would resume from, for a log line about a save that failed."""
    if durable_step is None:
        return "no checkpoint is durable: a restart starts from scratch"
    return f"the newest durable checkpoint is step {durable_step}: a restart resumes there"


def final_upload_timeout() -> float:
    return Settings.from_env().final_upload_timeout


def direct_uploader(
    settings: Settings, store: LocalStore, keep: int, best: retention.KeepBest | None
) -> DirectUploader | None:
    """Direct mode when the storage URI is S3 and no sidecar uploads (SPOTRUN_UPLOAD)."""
    uri = settings.storage_uri
    if not uri or settings.upload == "sidecar":
        return None
    if not uri.startswith("s3://"):
        raise ValueError(
            f"SPOTRUN_STORAGE_URI={uri!r}: direct upload supports s3:// URIs; unset it to keep "
            "checkpoints only in SPOTRUN_CHECKPOINT_DIR"
        )
    from .s3store import S3Store
    from .syncer import Syncer

    return DirectUploader(Syncer(store, S3Store.from_uri(uri), keep, best))


def _signal_name(signum: int | None) -> str:
    return signal.Signals(signum).name if signum is not None else "stop request"


def _call_site() -> str:
    """``file.py:line`` of the script line that called ckpt.range / ckpt.iterate."""
    frame = sys._getframe(2)
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


def _nothing() -> None:
    """The copy left for later when nothing is deferred."""
