"""``Checkpointer``: restore at start, save periodically in the background, save on SIGTERM.

    with Checkpointer(model=model, optimizer=opt, loader=loader, interval_steps=50) as ckpt:
        ckpt.restore()
        for epoch in loader.epochs(20):
            for x, y in loader:
                ...  # forward, backward, optimizer.step()
                ckpt.step(metrics={"loss": loss.item()})

Periodic saves stall training only for the in-memory snapshot; the write runs in a background
thread. On SIGTERM/SIGINT the next ``step()`` saves and exits 0; a second signal or the
deadline inside ``SPOTRUN_GRACE_SECONDS`` saves at once from a watchdog thread. An exception
escaping the ``with`` block saves the last consistent state, then propagates; one escaping
``restore()`` (or any before the first ``step()`` after it) saves nothing.

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
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import Any

import torch

from . import codec, distributed, marker, reader, retention, rng, writer
from .components import Components, Stateful
from .direct import DirectUploader
from .env import Settings
from .localstore import LocalStore
from .progress import ProgressLog
from .prune import prune
from .room import RoomKeeper
from .signals import StopRequest, save_deadline
from .snapshot import SnapshotBuffer
from .stale import remove_stale_tmp
from .store import StoreError

log = logging.getLogger("spotrun")


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
        interval_steps: int | None = None,
        interval_seconds: float | None = None,
        keep: int = 3,
        keep_best: retention.KeepBest | None = None,
        grace_seconds: float | None = None,
        exit_on_preemption: bool = True,
        handle_signals: bool = True,
    ) -> None:
        settings = Settings.from_env()
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
        self.components = Components(model, optimizer, scheduler, scaler, loader, extras or {})
        self.interval_steps = interval_steps
        self.interval_seconds = interval_seconds
        self.keep = keep
        self.keep_best = keep_best
        self.grace_seconds = settings.grace_seconds if grace_seconds is None else grace_seconds
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
        self._dirty = False  # parameters moved since the last step boundary
        self._boundary: dict[str, Any] = {}
        self._progress = ProgressLog(settings.progress_file)
        self._stop = StopRequest()
        self._closed = False
        self._copied = threading.Event()
        self._copied.set()
        self._hooks = self._watch_optimizer(optimizer)
        self._uploader = direct_uploader(settings, self.store, keep, keep_best)
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
        marker.clear(self.store.root)
        remove_stale_tmp(self.store.dir)
        if self._uploader is not None:
            try:
                self._uploader.syncer.restore_newest()
            except StoreError:  # the syncer logged the cause
                log.warning("spotrun: continuing with local checkpoints only")
        loaded = reader.newest_valid(self.store)
        if loaded is None:
            log.info("spotrun: no checkpoint in %s, starting from scratch", self.store.dir)
            self._progress.event("start", 0)
            return 0
        state = reader.decode_state(loaded)
        self.components.apply(state, self.store.file_uri(loaded.name))
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
        """Call once after each optimizer step. Returns True when the run should stop.

        Saves when an interval is due (in the background) or a stop signal arrived (at once;
        then exits 0 unless ``exit_on_preemption=False``).
        """
        self.global_step += 1
        self._stepped = True
        if metrics:
            self._metrics.update({k: float(v) for k, v in metrics.items()})
        self._mark_boundary()
        self._progress.event("step", self.global_step)
        if self._stop.requested:
            self._save_on_stop()
            return True
        if self._due():
            self.save(reason="periodic", wait=False)
        return False

    def record(self, **metrics: float) -> None:
        """Metrics (e.g. a validation score) written into the next checkpoint's manifest."""
        self._metrics.update({k: float(v) for k, v in metrics.items()})

    def save(self, reason: str = "manual", wait: bool = True) -> None:
        """Snapshot the state at the last step boundary and write it (in the background
        unless ``wait``)."""
        with self._lock:
            self.wait()
            if not distributed.is_writer():
                # DDP: rank 0 holds the same weights and writes; the others wait for it
                self._saved_step = self.global_step
                distributed.barrier()
                return
            started = time.monotonic()
            image, size, structure, copy_rest = self._snapshot(deferred=not wait)
            job = (self.global_step, self._epoch(), image, size, structure, reason)
            self._last_save_at = time.monotonic()
            self._saved_step = self.global_step
            log.debug(
                "spotrun: snapshot of step %d took %.3fs",
                self.global_step,
                self._last_save_at - started,
            )
            if wait:
                copy_rest()
                self._write_checkpoint(*job)
            else:
                self._copied.clear()
                self._write = threading.Thread(
                    target=self._write_in_background, args=(copy_rest, *job), name="spotrun-writer"
                )
                self._write.start()
            distributed.barrier()  # other ranks resume once the snapshot (or write) is done

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

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or isinstance(exc, SystemExit):
            self.close()
            return
        try:
            self._emergency_save(exc)
        finally:
            self._release()

    # -- internals ----------------------------------------------------------------------

    def _epoch(self) -> int:
        loader_state = self._boundary.get("loader")
        return int(loader_state["epoch"]) if isinstance(loader_state, dict) else 0

    def _due(self) -> bool:
        if self.interval_steps and self.global_step % self.interval_steps == 0:
            return True
        return bool(
            self.interval_seconds and time.monotonic() - self._last_save_at >= self.interval_seconds
        )

    def _mark_boundary(self) -> None:
        """Record what changes inside a step (RNG draws, batches taken) at the boundary."""
        boundary: dict[str, Any] = {"rng": rng.capture()}
        if self.components.loader is not None:
            boundary["loader"] = self.components.loader.state_dict()
        self._boundary = boundary
        self._dirty = False

    def _consistent(self) -> bool:
        """True when parameters are still those of the last step boundary."""
        return not (self._in_optimizer_step or self._dirty)

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

    def _write_in_background(self, copy_rest: Callable[[], None], *job: Any) -> None:
        """The writer thread: a failure is logged and kept in ``write_error``, never lost."""
        try:
            try:
                copy_rest()
            finally:
                self._copied.set()  # the optimizer may step again
            self._write_checkpoint(*job)
        except BaseException as e:  # noqa: B036 (a thread must not die silently)
            self.write_error = e
            log.error("spotrun: saving step %d to %s failed: %s", job[0], self.store.dir, e)

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
        self.last_save_seconds = time.monotonic() - started
        self.durable_step = step
        self.write_error = None
        if self._uploader is not None:
            self._uploader.notify()
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
        prune(self.store, self.keep, self.keep_best)

    def _save_on_stop(self) -> None:
        signame = _signal_name(self._stop.signum)
        log.info("spotrun: %s received, saving step %d before exiting", signame, self.global_step)
        self._save_last("preemption")
        if self.exit_on_preemption:
            self.close()
            log.info("spotrun: step %s is durable; exiting 0", self.durable_step)
            sys.exit(0)

    def _has_unsaved_work(self) -> bool:
        return unsaved_work(self._stepped, self.global_step, self.durable_step)

    def _save_last(self, reason: str) -> None:
        """A save at the end of the run: a failure is logged, never fails the finished run."""
        try:
            self.save(reason=reason, wait=True)
        except OSError as e:
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
        if not self._stepped:
            log.error(
                "spotrun: %s escaped before any training step (since restore() began); "
                "nothing is saved, the checkpoints in %s are left as they are",
                name,
                self.store.dir,
            )
            return
        self.wait()
        if not self._consistent():
            log.error(
                "spotrun: %s inside an optimizer step; the last consistent state is the "
                "checkpoint of step %s",
                name,
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
        """After the first signal: at a second signal or the deadline, save at once."""
        self._stop.changed.wait()
        self._stop.changed.clear()
        if self._closed:
            return
        deadline = save_deadline(self.grace_seconds, self.last_save_seconds)
        self._stop.changed.wait(timeout=deadline)
        if self._closed:
            return
        log.warning("spotrun: no step boundary reached in time; saving at once")
        with self._lock:
            if self._closed:
                return
            if self._consistent() and self._stepped and self._saved_step != self.global_step:
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
            self._dirty = True

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
    return float(os.environ.get("SPOTRUN_FINAL_UPLOAD_TIMEOUT", "300"))


def direct_uploader(
    settings: Settings, store: LocalStore, keep: int, best: retention.KeepBest | None
) -> DirectUploader | None:
    """Direct mode when the storage URI is S3 and no sidecar uploads (SPOTRUN_UPLOAD)."""
    uri = settings.storage_uri
    if not uri or os.environ.get("SPOTRUN_UPLOAD", "library") == "sidecar":
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
