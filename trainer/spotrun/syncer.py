"""Keep S3 in step with the local checkpoint directory (used by the sidecar and direct mode)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from . import layout, mirror
from .integrity import CorruptCheckpointError
from .localstore import LocalStore
from .manifest import ManifestError, UnknownFormatError
from .prune import prune
from .retention import KeepBest
from .store import OversizeError, StoreError

if TYPE_CHECKING:
    from .s3store import S3Store

log = logging.getLogger("spotrun")


class Syncer:
    def __init__(
        self,
        local: LocalStore,
        remote: S3Store,
        keep: int = 3,
        best: KeepBest | None = None,
        check: mirror.Check = mirror.decoded,
    ) -> None:
        self.local = local
        self.remote = remote
        self.keep = keep
        self.best = best  # S3 keeps the newest ``keep`` and the best by this metric
        self.check = check  # what a restore verifies (the sidecar: integrity, torch-free)
        self.durable_step: int | None = None  # newest step this syncer knows is in S3
        self.durable_at: float | None = None
        self.problem: str | None = None  # why S3 is degraded, None when healthy
        self.pending: str | None = None  # why the newest checkpoint is not in S3 yet (gangs)

    @property
    def done_step(self) -> int | None:
        """The newest step whose upload this pod owes is done (a gang pod: ``gangsync``)."""
        return self.durable_step

    def _fail(self, error: StoreError) -> None:
        message = str(error)
        if message != self.problem:
            log.error("spotrun: %s", message)
        self.problem = message

    def _ok(self) -> None:
        if self.problem is not None:
            log.info("spotrun: S3 at %s works again", self.remote.uri)
        self.problem = None

    def restore_newest(self) -> int | None:
        """Download the newest valid remote checkpoint newer than any local one.

        Returns the step now available locally (None when there is none). Raises StoreError
        when S3 cannot be read; corrupt remote checkpoints are skipped, older ones tried.
        """
        local = mirror.newest_committed(self.local)
        local_step = local[0] if local else -1
        try:
            names = layout.newest_first(self.remote.names())
        except StoreError as e:
            self._fail(e)
            raise
        for step, name in names:
            if step <= local_step:
                break
            try:
                started = time.monotonic()
                mirror.download(self.remote, name, self.local, self.check)
            except UnknownFormatError:
                raise
            except (ManifestError, CorruptCheckpointError, OversizeError) as e:
                log.warning("spotrun: skipping %s: %s; trying an older one", name, e)
                continue
            log.info(
                "spotrun: restored %s from %s in %.1fs",
                name,
                self.remote.file_uri(name),
                time.monotonic() - started,
            )
            self.durable_step, self.durable_at = step, time.time()
            self._ok()
            return step
        self._ok()
        return local_step if local_step >= 0 else None

    def sync_once(self) -> bool:
        """Upload the newest committed local checkpoint if S3 lacks it; prune S3.

        Returns True when S3 holds the newest local checkpoint afterwards.
        """
        newest = mirror.newest_committed(self.local)
        if newest is None:
            return True
        step, name = newest
        if self.durable_step is not None and step <= self.durable_step:
            return True
        try:
            mirror.upload(self.local, name, self.remote)
            deleted = prune(self.remote, self.keep, self.best)
        except StoreError as e:
            self._fail(e)
            return False
        except FileNotFoundError:
            return False  # local retention removed it meanwhile: a newer one exists
        except ManifestError as e:
            # committed when listed; its manifest gone now means local retention removed it
            # meanwhile (the next pass takes the newer one); one still there broke on disk
            if (self.local.dir / name / layout.MANIFEST).exists():
                log.warning("spotrun: not uploading %s: %s", name, e)
            return False
        if deleted:
            steps = ", ".join(map(str, deleted))
            log.info("spotrun: retention deleted step(s) %s from %s", steps, self.remote.uri)
        self.durable_step, self.durable_at = step, time.time()
        self._ok()
        return True
