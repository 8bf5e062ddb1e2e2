"""Checkpoints in a local directory: atomic by rename, durable by fsync."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from . import layout


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.dir = self.root / layout.CHECKPOINTS
        self.uri = str(self.root)

    def names(self) -> list[str]:
        try:
            return [e.name for e in os.scandir(self.dir) if e.is_dir()]
        except FileNotFoundError:
            return []

    def has_manifest(self, name: str) -> bool:
        return (self.dir / name / layout.MANIFEST).is_file()

    def read(
        self, name: str, path: str, progress: Callable[[int], None] | None = None
    ) -> bytearray:
        file = self.dir / name / path
        with open(file, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            blob = bytearray(size)
            view = memoryview(blob)
            done = 0
            while done < size and (n := f.readinto(view[done:])):
                done += n
        if progress:
            progress(done)
        return blob if done == size else blob[:done]

    def delete(self, name: str) -> None:
        folder = self.dir / name
        try:
            (folder / layout.MANIFEST).unlink()
            fsync_dir(folder)
        except FileNotFoundError:
            pass
        shutil.rmtree(folder, ignore_errors=True)

    def file_uri(self, name: str, path: str = "") -> str:
        return str(self.dir / name / path) if path else str(self.dir / name)

    def path(self, name: str) -> Path:
        return self.dir / name
