"""Write one checkpoint into a local directory: temp folder, fsync, MANIFEST last, rename."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import torch

from . import checksum, layout, manifest, tensorfile
from .localstore import LocalStore, fsync_dir
from .stale import writer_token

CHUNK = 64 * 1024 * 1024


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


def write(
    store: LocalStore,
    *,
    step: int,
    epoch: int,
    tensor_layout: tensorfile.Layout,
    data: torch.Tensor,
    structure: bytes,
    metrics: dict[str, float],
    reason: str,
) -> Path:
    """Write and commit the checkpoint of ``step``; returns its folder."""
    store.dir.mkdir(parents=True, exist_ok=True)
    tmp = store.dir / layout.tmp_dirname(step, writer_token(secrets.token_hex(3)))
    tmp.mkdir()
    payload = data.numpy().data if data.numel() else memoryview(b"")
    files = [
        _write_file(tmp / layout.TENSORS, [memoryview(tensor_layout.header), payload]),
        _write_file(tmp / layout.STRUCTURE, [memoryview(structure)]),
    ]
    record = manifest.new(step, epoch, files, metrics, reason)
    manifest_path = tmp / layout.MANIFEST
    with open(manifest_path, "xb") as f:
        f.write(record.to_json())
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(tmp)
    final = store.dir / layout.step_dirname(step)
    if final.exists():
        store.delete(final.name)
    os.rename(tmp, final)
    fsync_dir(store.dir)
    return final
