"""Move whole checkpoints between the local directory and S3, keeping the commit protocol.

Upload: payload files first, ``MANIFEST.json`` last, so a reader never sees a manifest naming a
missing file; a step already committed remotely (by another attempt) is left alone. Download:
every file verified against the manifest (``check``: sizes and CRC32C, plus the payload decode
where torch is at hand), written into a temp folder, renamed into place.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import layout
from .integrity import Loaded, read_manifest
from .localstore import LocalStore, fsync_dir
from .stale import writer_token
from .store import Store
from .transferlog import TransferLog

if TYPE_CHECKING:
    from .s3store import S3Store

log = logging.getLogger("spotrun")

Check = Callable[[Store, str], Loaded]


def decoded(store: Store, name: str) -> Loaded:
    """Integrity and the payload decode (``reader.load_verified``; imports torch)."""
    from .reader import load_verified

    return load_verified(store, name)


def upload(local: LocalStore, name: str, remote: S3Store) -> bool:
    """Upload one committed local checkpoint; False if the remote already had that step."""
    if remote.has_manifest(name):
        return False
    manifest = read_manifest(local, name)
    progress = TransferLog(f"uploading {name} to {remote.uri}", manifest.total_size)
    for entry in manifest.files:
        remote.upload_file(name, entry.path, local.path(name) / entry.path, progress)
    remote.put_bytes(name, layout.MANIFEST, manifest.to_json())
    rate = manifest.total_size / max(progress.seconds, 1e-9) / 1e6
    log.info(
        "spotrun: uploaded %s (%.1f MiB) to %s in %.1fs (%.0f MB/s)",
        name,
        manifest.total_size / 2**20,
        remote.file_uri(name),
        progress.seconds,
        rate,
    )
    return True


def download(remote: S3Store, name: str, local: LocalStore, check: Check = decoded) -> None:
    """Fetch and verify (``check``) one remote checkpoint into the local directory.

    Only the format's file names are written (the manifest cannot name others: ``reader``
    refuses it), each created fresh in a new temp folder without following links. A gang
    checkpoint comes whole: every rank's ``rank-NNNNN/`` files, whichever node asks (the next
    attempt may run at another world size), so each node downloads its total size.
    """
    loaded = check(remote, name)
    local.dir.mkdir(parents=True, exist_ok=True)
    tmp = local.dir / layout.tmp_dirname(loaded.step, writer_token(secrets.token_hex(3)))
    tmp.mkdir()
    files: list[tuple[str, bytes | bytearray]] = [*loaded.files.items()]
    files.append((layout.MANIFEST, loaded.manifest.to_json()))  # last: the commit marker
    allowed = {*layout.expected_paths(loaded.manifest.world_size), layout.MANIFEST}
    folder = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for path, blob in files:
            if path not in allowed:  # reader guarantees; never trust
                raise ValueError(f"refusing to write {path!r}: not a checkpoint file name")
            _write_new(folder, path, blob)
        os.fsync(folder)
    finally:
        os.close(folder)
    final = local.path(name)
    if os.path.lexists(final):
        local.delete(name)
    os.rename(tmp, final)
    fsync_dir(local.dir)


def _write_new(folder: int, path: str, blob: bytes | bytearray) -> None:
    """Create ``path`` fresh under ``folder``; a gang checkpoint's ``rank-NNNNN/`` folder is
    created (or opened) on the way, never followed if it is a link."""
    sub, _, leaf = path.rpartition("/")
    inner = folder
    if sub:
        try:
            os.mkdir(sub, 0o755, dir_fd=folder)
        except FileExistsError:
            pass
        inner = os.open(sub, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=folder)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(leaf, flags, 0o644, dir_fd=inner)
        with open(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(fd)
        if sub:
            os.fsync(inner)
    finally:
        if sub:
            os.close(inner)


def newest_committed(store: LocalStore | S3Store) -> tuple[int, str] | None:
    """The newest folder that has a manifest (cheap: lists, never reads payloads)."""
    for step, name in layout.newest_first(store.names()):
        if store.has_manifest(name):
            return step, name
    return None
