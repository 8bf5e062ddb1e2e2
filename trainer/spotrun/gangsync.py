"""The sidecar of one pod of a gang (issue 14): upload this node's part of each checkpoint, and
on node 0 commit it once every node's part is in S3. Decisions live in ``gangparts``.

Each pass, node k's sidecar finds the newest local folder holding its ``PART-node-k.json``
(the library writes it after the node's files), checks the PART (its step, node, gang size
and files: ``gangparts.part_problem``), verifies every file it names (size, CRC32C, opened
without following links), uploads the files, then the PART. Node 0 then waits for the local
MANIFEST.json (global rank 0 writes it after every rank wrote), lists the checkpoint's folder
in S3 with backoff, and puts MANIFEST.json only when ``gangparts.commit_wait`` has nothing
left to wait for. A checkpoint whose parts never all arrive is never committed; the wait ends
when a newer one is committed, or at the grace deadline after SIGTERM (the sidecar's cap on
every S3 call), and the log and the report say which parts were missing.

Retention: node 0 alone prunes S3 (``keep``/``keepBest``, manifest first, then every object
of the folder, parts included) and deletes never-committed folders older than what retention
keeps (``gangparts.remote_leftovers``); every node deletes its local folders without a
MANIFEST once older than its newest ``keep`` (the library prunes those with one).

Restore is the single pod's (``Syncer.restore_newest``): every node downloads the WHOLE
checkpoint, every rank's files, because the next attempt may run at another world size and
its ranks need files other nodes wrote (rank 0's top-level state, or every shard to
reshard). The cost: each node moves the checkpoint's total size, not its share.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import time
from typing import TYPE_CHECKING

from . import checksum, gangparts, layout, mirror
from .gangparts import Folder, PartError, Role
from .integrity import CorruptCheckpointError, read_manifest
from .localstore import LocalStore
from .manifest import FileEntry, Manifest, ManifestError, Part
from .prune import entries
from .retention import KeepBest, to_delete
from .store import OversizeError, StoreError, UnsafeFileError
from .syncer import Syncer
from .transferlog import TransferLog

if TYPE_CHECKING:
    from .s3store import S3Store

log = logging.getLogger("spotrun")

FIRST_CHECK = 0.2  # seconds between node 0's first looks for the other parts ...
MAX_CHECK = 2.0  # ... doubling up to this


class GangSyncer(Syncer):
    """``Syncer`` for a pod of a gang; ``done_step`` is what this pod owes the checkpoint:
    its part in S3 (nodes > 0), the committed checkpoint (node 0)."""

    def __init__(
        self,
        local: LocalStore,
        remote: S3Store,
        role: Role,
        keep: int = 3,
        best: KeepBest | None = None,
        check: mirror.Check = mirror.decoded,
    ) -> None:
        super().__init__(local, remote, keep, best, check)
        self.role = role
        self.part_step: int | None = None  # newest step whose part of this node is in S3
        self.uploaded: set[int] = set()  # steps whose part of this node is in S3
        self.refused: set[str] = set()  # local folders not uploaded nor committed (logged)
        self._waiting: tuple[int, str] | None = None  # (step, reason) node 0 waits on
        self._unfinished: dict[int, str] = {}  # steps node 0 waited on, and why
        self._warned: set[str] = set()  # unusable PARTs in S3 already logged
        self._next_check = 0.0
        self._delay = FIRST_CHECK
        self._looked = False  # whether the last _try_commit listed S3 (not held by backoff)

    @property
    def done_step(self) -> int | None:
        return self.durable_step if self.role.node == 0 else self.part_step

    def sync_once(self) -> bool:
        """Upload this node's newest part; node 0: commit the newest checkpoint it can.
        True when nothing newer is left to upload or commit."""
        try:
            synced = self._upload_newest_part()
            if self.role.node == 0:
                synced = self._commit_newest() and synced
        except StoreError as e:
            self._fail(e)
            return False
        self._ok()
        self._sweep_local()
        return synced

    # -- this node's part ---------------------------------------------------------------

    def _folders(self) -> list[Folder]:
        own = layout.part_name(self.role.node)
        return [
            Folder(
                step,
                os.path.lexists(self.local.path(name) / own),
                os.path.lexists(self.local.path(name) / layout.MANIFEST),
            )
            for step, name in layout.newest_first(self.local.names())
        ]

    def _refuse(self, name: str, why: str) -> None:
        if name not in self.refused:
            self.refused.add(name)
            log.error("spotrun sidecar: not uploading %s: %s", self.local.file_uri(name), why)

    def _local_part(self, name: str, step: int) -> Part | None:
        """This node's PART in folder ``name``, checked; None (logged once) when refused."""
        own = layout.part_name(self.role.node)
        where = self.local.file_uri(name, own)
        try:
            part = gangparts.parse_part(
                self.local.read(name, own, limit=layout.MANIFEST_LIMIT), where
            )
        except FileNotFoundError:
            return None  # local retention removed it meanwhile
        except (PartError, OversizeError, UnsafeFileError, PermissionError) as e:
            self._refuse(name, str(e))
            return None
        role = self.role
        problem = gangparts.part_problem(part, step, role.node, role.nnodes, role.procs_per_node)
        if problem is not None:
            self._refuse(name, f"{where}: {problem}")
            return None
        return part

    def _upload_newest_part(self) -> bool:
        for step in gangparts.committed_for_node(self._folders()):
            if self.part_step is not None and step <= self.part_step:
                return True
            name = layout.step_dirname(step)
            if name in self.refused:
                continue
            part = self._local_part(name, step)
            if part is None:
                continue
            return self._upload_part(name, part)
        return True

    def _upload_part(self, name: str, part: Part) -> bool:
        """Files first (each verified against the PART), the PART last. An S3 folder already
        committed (an earlier attempt saved that step) is left alone."""
        if part.step in self.uploaded:
            return True
        if self.remote.has_manifest(name):
            self._mark_uploaded(part.step)
            return True
        total = sum(f.size for f in part.files)
        progress = TransferLog(f"uploading node {part.node_rank}'s part of {name}", total)
        try:
            for entry in part.files:
                self._upload_verified(name, entry, progress)
        except FileNotFoundError:
            return False  # local retention removed it meanwhile: a newer one exists
        except CorruptCheckpointError as e:
            self._refuse(name, str(e))
            return False
        self.remote.put_bytes(name, layout.part_name(part.node_rank), part.to_json())
        log.info(
            "spotrun sidecar: uploaded node %d's part of %s (%.1f MiB) to %s in %.1fs",
            part.node_rank,
            name,
            total / 2**20,
            self.remote.file_uri(name),
            progress.seconds,
        )
        self._mark_uploaded(part.step)
        return True

    def _mark_uploaded(self, step: int) -> None:
        self.uploaded.add(step)
        if self.part_step is None or step > self.part_step:
            self.part_step = step
            if self.role.node != 0:
                self.durable_at = time.time()  # what the trainer's notice planning measures

    def _upload_verified(self, name: str, entry: FileEntry, progress: TransferLog) -> None:
        where = self.local.file_uri(name, entry.path)
        fd = open_in_checkpoint(self.local, name, entry.path)
        try:
            size = os.fstat(fd).st_size
            crc = _crc_of_fd(fd, size)
            if (size, checksum.to_hex(crc)) != (entry.size, entry.crc32c):
                raise CorruptCheckpointError(
                    f"{where}: {size} bytes, CRC32C {checksum.to_hex(crc)}; its PART says "
                    f"{entry.size} bytes, CRC32C {entry.crc32c}"
                )
            self.remote.upload_fd(name, entry.path, fd, size, progress)
        finally:
            os.close(fd)

    # -- node 0: the commit ---------------------------------------------------------------

    def _commit_newest(self) -> bool:
        """Commit the newest local checkpoint with a MANIFEST (and node 0's PART) newer than
        the durable one, once every part is in S3. While it waits, an older one whose parts
        are all in S3 already is committed: a node that uploads slower than the trainer saves
        moves on to its newest part, so waiting on the newest alone could never commit
        anything. True when none is left to commit."""
        waiting = False
        for folder in self._folders():
            if self.durable_step is not None and folder.step <= self.durable_step:
                break
            name = layout.step_dirname(folder.step)
            if not (folder.manifest and folder.part) or name in self.refused:
                continue
            manifest = self._local_manifest(name)
            part = self._local_part(name, folder.step)
            if manifest is None or part is None or not self._upload_part(name, part):
                continue
            if waiting:  # an older step: committed only if nothing is missing now
                if self._settle(name, manifest) is None:
                    return False  # the newer one still waits
                continue
            if self._try_commit(name, manifest):
                return True
            if not self._looked:  # its backoff: S3 was not listed this pass
                return False
            waiting = True
        if waiting:
            return False
        self.pending = None
        return True

    def _local_manifest(self, name: str) -> Manifest | None:
        try:
            manifest = read_manifest(self.local, name)
        except ManifestError as e:
            if self.local.has_manifest(name):  # else local retention removed it meanwhile
                self._refuse(name, str(e))
            return None
        problem = gangparts.manifest_problem(manifest, self.role)
        if problem is not None:
            self._refuse(name, f"{self.local.file_uri(name, layout.MANIFEST)}: {problem}")
            return None
        return manifest

    def _try_commit(self, name: str, manifest: Manifest) -> bool:
        self._looked = False
        if self._waiting is None or self._waiting[0] != manifest.step:
            self._waiting, self._next_check, self._delay = (manifest.step, ""), 0.0, FIRST_CHECK
        if time.monotonic() < self._next_check:
            return False
        self._looked = True
        reason = self._settle(name, manifest)
        if reason is not None:
            if reason != self._waiting[1]:
                log.info("spotrun sidecar: not committing %s yet: %s", name, reason)
            self._waiting = (manifest.step, reason)
            self._unfinished[manifest.step] = reason
            self.pending = f"step {manifest.step} not committed: {reason}"
            self._next_check = time.monotonic() + self._delay
            self._delay = min(self._delay * 2, MAX_CHECK)
            return False
        return True

    def _settle(self, name: str, manifest: Manifest) -> str | None:
        """Commit ``name`` when every node's part is in S3 (or find it committed by an
        earlier attempt); else why not yet."""
        if self.remote.has_manifest(name):
            self._committed(manifest.step, said=False)
            return None
        listed = self.remote.listing(name)
        reason = gangparts.commit_wait(manifest, self._remote_parts(name, listed), listed)
        if reason is None:
            self.remote.put_bytes(name, layout.MANIFEST, manifest.to_json())
            self._committed(manifest.step, said=True)
        return reason

    def _remote_parts(self, name: str, listed: dict[str, int]) -> dict[int, Part]:
        """The PARTs in S3 for the nodes of this gang (another's leftovers ignored); one that
        cannot be parsed counts as absent (and is logged once): it may yet be overwritten."""
        parts = {}
        for node in range(self.role.nnodes):
            if layout.part_name(node) not in listed:
                continue
            where = self.remote.file_uri(name, layout.part_name(node))
            try:
                blob = self.remote.read(name, layout.part_name(node), limit=layout.MANIFEST_LIMIT)
                parts[node] = gangparts.parse_part(blob, where)
            except FileNotFoundError:
                continue
            except (PartError, OversizeError) as e:
                if str(e) not in self._warned:
                    self._warned.add(str(e))
                    log.warning("spotrun sidecar: %s", e)
        return parts

    def _committed(self, step: int, said: bool) -> None:
        for older, reason in sorted(self._unfinished.items()):
            if older < step:
                log.error(
                    "spotrun sidecar: step %d was never committed (%s); step %d is",
                    older,
                    reason,
                    step,
                )
        self._unfinished.clear()
        self._warned.clear()
        self._waiting, self.pending = None, None
        self.durable_step, self.durable_at = step, time.time()
        if said:
            log.info(
                "spotrun sidecar: committed %s (every node's part is in S3)",
                self.remote.file_uri(layout.step_dirname(step)),
            )
        self._prune_remote()

    def _prune_remote(self) -> None:
        """Retention, then never-committed folders older than what it keeps."""
        kept = entries(self.remote)
        for step in to_delete(kept, self.keep, self.best):
            self.remote.delete(layout.step_dirname(step))
        committed = {e.step for e in kept}
        names = layout.newest_first(self.remote.names())
        uncommitted = [step for step, _ in names if step not in committed]
        for step in gangparts.remote_leftovers(sorted(committed), uncommitted, self.keep):
            name = layout.step_dirname(step)
            if not self.remote.has_manifest(name):  # an unreadable manifest is not a leftover
                log.info("spotrun sidecar: deleting never-committed %s", self.remote.file_uri(name))
                self.remote.delete(name)

    # -- local retention --------------------------------------------------------------------

    def _sweep_local(self) -> None:
        for step in gangparts.local_leftovers(self._folders(), self.keep):
            name = layout.step_dirname(step)
            if not self.local.has_manifest(name):
                shutil.rmtree(self.local.path(name), ignore_errors=True)
                self.refused.discard(name)


def open_in_checkpoint(local: LocalStore, name: str, path: str) -> int:
    """A read-only descriptor of ``checkpoints/<name>/<path>`` where ``path`` is one of the
    format's names (``rank-NNNNN/<payload>`` included): every folder a real one and the file a
    regular one, no link followed. FileNotFoundError when absent, CorruptCheckpointError
    for anything else there."""
    where = local.file_uri(name, path)
    folder_name, _, leaf = path.rpartition("/")
    if path not in layout.PAYLOAD and gangparts.rank_of(path) is None:
        raise CorruptCheckpointError(f"{where}: not a checkpoint file name; refused")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    opened: list[int] = []
    try:
        opened.append(os.open(local.path(name), flags | os.O_DIRECTORY))
        if folder_name:
            opened.append(os.open(folder_name, flags | os.O_DIRECTORY, dir_fd=opened[-1]))
        fd = os.open(leaf, flags | os.O_NONBLOCK, dir_fd=opened[-1])
    except FileNotFoundError:
        raise
    except OSError as e:
        raise CorruptCheckpointError(
            f"{where}: {e.strerror} (a link or not a file?); refused"
        ) from None
    finally:
        for folder in opened:
            os.close(folder)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CorruptCheckpointError(f"{where}: not a regular file; refused")
    return fd


def _crc_of_fd(fd: int, size: int) -> int:
    crc, offset = 0, 0
    while offset < size:
        chunk = os.pread(fd, min(checksum.CHUNK, size - offset), offset)
        if not chunk:
            break
        crc = checksum.extend(crc, chunk)
        offset += len(chunk)
    return crc
