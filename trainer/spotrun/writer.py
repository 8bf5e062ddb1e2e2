"""Write one checkpoint into a local directory: temp folder, fsync, MANIFEST last, rename.

A save that fails (no space, quota, I/O error, anything) removes its temp folder before the
error propagates, so a full disk is not left fuller by the partial copy.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from pathlib import Path

from . import checksum, layout, manifest
from .localstore import LocalStore, fsync_dir
from .stale import writer_token

CHUNK = 64 * 1024 * 1024

OUT_OF_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def out_of_space(error: BaseException) -> bool:
    """The device or the quota is full: deleting older checkpoints can make the save fit."""
    return isinstance(error, OSError) and error.errno in OUT_OF_SPACE


def _write_file(path: Path, parts: list[memoryview]) -> manifest.FileEntry:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        crc = 0
        for part in parts:
            crc = _write_part(crc, fd, part)
        os.fsync(fd)
    finally:
        os.close(fd)
    size = sum(len(p) for p in parts)
    return manifest.FileEntry(path=path.name, size=size, crc32c=checksum.to_hex(crc))


def _write_part(crc: int, fd: int, part: memoryview) -> int:
    """Write ``part`` (retrying short writes) and fold it into the running CRC32C."""
    for start in range(0, len(part), CHUNK):
        chunk = part[start : start + CHUNK]
        crc = checksum.extend(crc, chunk)
        while chunk:
            chunk = chunk[os.write(fd, chunk) :]
    return crc


def _write_direct(path: Path, image: memoryview, size: int) -> manifest.FileEntry:
    """Write the page-aligned ``image`` (``size`` real bytes) bypassing the page cache.

    On these VMs a buffered 1 GiB write+fsync took 0.8-5.5 s and slowed concurrent training
    steps 1.7-2.4x; O_DIRECT took 0.5-0.8 s at 1.1-1.2x (bench/write_modes.py). Filesystems
    without O_DIRECT (tmpfs, some overlays) get the buffered path.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o644)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        return _write_file(path, [image[:size]])
    crc = 0
    try:
        for start in range(0, len(image), CHUNK):
            chunk = image[start : start + CHUNK]
            crc = checksum.extend(crc, chunk[: max(min(len(chunk), size - start), 0)])
            while chunk:
                chunk = chunk[os.write(fd, chunk) :]
        os.ftruncate(fd, size)  # drop the padding of the last page
        os.fsync(fd)
    except OSError as e:
        os.close(fd)
        if e.errno != errno.EINVAL:
            raise
        path.unlink()
        return _write_file(path, [image[:size]])
    os.close(fd)
    return manifest.FileEntry(path=path.name, size=size, crc32c=checksum.to_hex(crc))


def write_payload(
    folder: Path, rel: str, tensor_file: memoryview, tensor_size: int, structure: bytes
) -> list[manifest.FileEntry]:
    """Write one payload (tensors, state.json) under ``folder/rel`` by temp name and rename
    (so a rewrite replaces a stale file whole); entries name ``rel/<file>``, synced."""
    target = folder / rel if rel else folder
    target.mkdir(parents=True, exist_ok=True)
    token = writer_token(secrets.token_hex(3))
    entries = []
    for name in layout.PAYLOAD:
        tmp = target / f"{layout.TMP_PREFIX}{name}-{token}"
        try:
            if name == layout.TENSORS:
                entry = _write_direct(tmp, tensor_file, tensor_size)
            else:
                entry = _write_file(tmp, [memoryview(structure)])
            os.replace(tmp, target / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        path = f"{rel}/{name}" if rel else name
        entries.append(manifest.FileEntry(path=path, size=entry.size, crc32c=entry.crc32c))
    fsync_dir(target)
    return entries


def write_marker(folder: Path, name: str, blob: bytes) -> None:
    """A commit marker (MANIFEST.json, PART-node-N.json) written whole: temp, fsync, rename."""
    tmp = folder / f"{layout.TMP_PREFIX}{name}-{writer_token(secrets.token_hex(3))}"
    try:
        with open(tmp, "xb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(folder)


def write(
    store: LocalStore,
    *,
    step: int,
    epoch: int,
    tensor_file: memoryview,
    tensor_size: int,
    structure: bytes,
    metrics: dict[str, float],
    reason: str,
) -> Path:
    """Write and commit the checkpoint of ``step``; returns its folder.

    On any failure the temp folder is removed and the error propagates."""
    store.dir.mkdir(parents=True, exist_ok=True)
    tmp = store.dir / layout.tmp_dirname(step, writer_token(secrets.token_hex(3)))
    tmp.mkdir()
    try:
        files = [
            _write_direct(tmp / layout.TENSORS, tensor_file, tensor_size),
            _write_file(tmp / layout.STRUCTURE, [memoryview(structure)]),
        ]
        _write_manifest(tmp, manifest.new(step, epoch, files, metrics, reason))
        final = store.dir / layout.step_dirname(step)
        if final.exists():
            store.delete(final.name)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(store.dir)
    return final


def _write_manifest(folder: Path, record: manifest.Manifest) -> None:
    """The commit marker, written last; the folder is synced so the rename publishes it whole."""
    with open(folder / layout.MANIFEST, "xb") as f:
        f.write(record.to_json())
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(folder)
