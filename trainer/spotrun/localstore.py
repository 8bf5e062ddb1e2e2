"""Checkpoints in a local directory: atomic by rename, durable by fsync.

Step folders and their files are opened without following links and must be a real
directory and regular files: a symlinked step folder is not a checkpoint, and a link, FIFO or
device inside one makes that checkpoint invalid (a FIFO is opened non-blocking, so it cannot
hang a reader). The root itself may be a link (a mounted volume): the user chose it.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from . import layout
from .store import OversizeError, StoreError, UnsafeFileError

_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def plain_name(name: str) -> bool:
    """One path component that names an entry of its folder (no '/', '..', '.', NUL, '')."""
    return name not in ("", ".", "..") and "/" not in name and "\0" not in name


class LocalStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.dir = self.root / layout.CHECKPOINTS
        self.uri = str(self.root)

    def check_root(self) -> None:
        """StoreError unless the root is an existing directory (a typo, an unmounted volume)."""
        if not self.root.is_dir():
            raise StoreError(
                f"{self.root}: no such directory; give the checkpoint root (the folder that "
                f"holds {layout.CHECKPOINTS}/, the job's SPOTRUN_CHECKPOINT_DIR)"
            )

    def names(self) -> list[str]:
        """Real folders under checkpoints/ (a symlink to a folder is not listed)."""
        try:
            return [e.name for e in os.scandir(self.dir) if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return []

    def has_manifest(self, name: str) -> bool:
        try:
            os.close(self._open_file(name, layout.MANIFEST))
        except (OSError, UnsafeFileError):
            return False
        return True

    def read(
        self,
        name: str,
        path: str,
        progress: Callable[[int], None] | None = None,
        limit: int | None = None,
    ) -> bytearray:
        fd = self._open_file(name, path)
        with open(fd, "rb", buffering=0) as f:
            size = os.fstat(fd).st_size
            if limit is not None and size > limit:
                raise OversizeError(
                    f"{self.file_uri(name, path)}: {size} bytes, more than the {limit} expected; "
                    "not read"
                )
            blob = bytearray(size)
            view = memoryview(blob)
            done = 0
            while done < size and (n := f.readinto(view[done:])):
                done += n
        if progress:
            progress(done)
        return blob if done == size else blob[:done]

    def _open_file(self, name: str, path: str) -> int:
        """A read-only descriptor of checkpoints/<name>/<path>: a real folder and a regular
        file, no link followed; FileNotFoundError when absent, UnsafeFileError otherwise."""
        where = self.file_uri(name, path)
        sub, _, leaf = path.rpartition("/")
        if not (plain_name(name) and plain_name(leaf) and _rank_folder(sub)):
            raise UnsafeFileError(f"{where}: not a plain name inside the checkpoint folder")
        try:
            folder = os.open(self.dir / name, _NOFOLLOW | os.O_DIRECTORY)
        except OSError as e:
            raise _refused(e, self.file_uri(name), "a real folder") from None
        try:
            if sub:  # a gang checkpoint's rank-NNNNN/ folder: a real folder too
                inner = os.open(sub, _NOFOLLOW | os.O_DIRECTORY, dir_fd=folder)
                os.close(folder)
                folder = inner
            fd = os.open(leaf, _NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
        except OSError as e:
            raise _refused(e, where, "a regular file") from None
        finally:
            os.close(folder)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UnsafeFileError(
                f"{where}: not a regular file (a FIFO, device or folder); refused"
            )
        return fd

    def delete(self, name: str) -> None:
        """Manifest first, then the folder; a link or file in place of the folder is removed
        itself, never what it points to."""
        if not plain_name(name):
            raise ValueError(f"{self.file_uri(name)}: not a checkpoint folder name")
        folder = self.dir / name
        try:
            mode = os.lstat(folder).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(mode):
            folder.unlink()
            return
        try:
            (folder / layout.MANIFEST).unlink()
            fsync_dir(folder)
        except (FileNotFoundError, IsADirectoryError):
            pass
        shutil.rmtree(folder, ignore_errors=True)

    def file_uri(self, name: str, path: str = "") -> str:
        return str(self.dir / name / path) if path else str(self.dir / name)

    def path(self, name: str) -> Path:
        return self.dir / name


def _rank_folder(sub: str) -> bool:
    """'' (the step folder itself) or a gang checkpoint's ``rank-NNNNN`` folder."""
    return sub == "" or layout.parse_rank_dirname(sub) is not None


def _refused(error: OSError, where: str, wanted: str) -> OSError | UnsafeFileError:
    """Absent stays FileNotFoundError; a link or the wrong kind of entry is UnsafeFileError."""
    if error.errno == errno.ENOENT:
        return FileNotFoundError(errno.ENOENT, "no such file", where)
    if error.errno in (errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.ENXIO):
        return UnsafeFileError(f"{where}: not {wanted} (a symbolic link or another kind); refused")
    return error
