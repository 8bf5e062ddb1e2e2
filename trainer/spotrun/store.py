"""Where checkpoints live, behind one small interface picked by URI scheme.

A store holds ``checkpoints/<step folder>/<file>`` objects. Local directories and S3 share the
commit protocol: payload first, ``MANIFEST.json`` last; deletion removes the manifest first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class StoreError(OSError):
    """Storage failed; the message names the URI and the cause."""


class OversizeError(ValueError):
    """An object larger than its reader allowed: refused before it is read or allocated.

    Not a StoreError (retrying will not help): the checkpoint holding it is invalid."""


class UnsafeFileError(ValueError):
    """A link, FIFO, device, folder or other non-regular file where a checkpoint's file or
    folder should be: refused without reading it or following it. The checkpoint is invalid."""


class Store(Protocol):
    uri: str

    def names(self) -> list[str]:
        """Folder names directly under ``checkpoints/`` (committed or not)."""
        ...

    def has_manifest(self, name: str) -> bool: ...

    def read(
        self,
        name: str,
        path: str,
        progress: Callable[[int], None] | None = None,
        limit: int | None = None,
    ) -> bytearray:
        """The whole file ``checkpoints/<name>/<path>``; FileNotFoundError if absent.
        ``progress`` is called with byte counts as parts arrive. A file larger than ``limit``
        bytes raises OversizeError before anything is allocated or read."""
        ...

    def delete(self, name: str) -> None:
        """Remove a checkpoint: manifest first, so it stops counting before it disappears."""
        ...

    def file_uri(self, name: str, path: str = "") -> str: ...


def open_store(uri: str) -> Store:
    """``s3://bucket/prefix`` or a local path (``file://`` accepted)."""
    if uri.startswith("s3://"):
        from .s3store import S3Store

        return S3Store.from_uri(uri)
    if "://" in uri and not uri.startswith("file://"):
        scheme = uri.split("://", 1)[0]
        raise StoreError(
            f"unsupported storage URI {uri!r}: scheme {scheme!r} is not one of file://, s3:// "
            "or a local path"
        )
    from .localstore import LocalStore

    return LocalStore(uri.removeprefix("file://"))
