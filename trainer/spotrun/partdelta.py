"""Part-level delta uploads: send only the parts of a file that changed since its durable copy.

When ``S3Store`` uploads a payload file as a multipart upload it keeps, per path inside the
checkpoint folder (``tensors.safetensors``, ``rank-00000/tensors.safetensors``), the object it
wrote: its key, its ETag, its size, the part size and the SHA-256 of every part
(``DurableFile``). The next checkpoint's file of the same path, size and part size hashes
each part as it reads it; a part whose digest equals the durable part at the same index is
made server-side by ``UploadPartCopy`` from the previous object (``CopySourceRange``, guarded
by ``CopySourceIfMatch`` on its ETag), every other part is sent as before. The new object is
still a real, complete object: readers are unchanged, and the manifest's whole-file CRC32C
still verifies every byte, so a wrong copy can never be restored silently.

SHA-256, not CRC32C: 32 bits are too weak to decide "unchanged" over thousands of parts, and
sha256 hashes about 1.7 GB/s a core here (bench/FINAL_SAVE_RESULTS.md), a small cost beside
the upload it saves. The digests live in memory only: the first upload after a (sidecar)
restart is a full one.

Falls back, never fails: a copy refused because the previous object is gone or changed
(retention, another writer) sends that part and forgets the record; any other refusal (a
throttle, a server error) sends that part and keeps it; a server without ``UploadPartCopy``
turns the delta off for the store (logged once) and sends the part; an upload that copied
parts and then failed forgets the record, so the retry sends every part. The parts a delta
upload sends carry a Content-MD5 (it goes without part checksums): S3 refuses one changed on
its way.
Pure decisions here; the S3 calls are in ``s3store``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger("spotrun")

Buffer = bytes | bytearray | memoryview

# error codes of a server that has no UploadPartCopy (the delta is then off for the store)
_UNSUPPORTED = {"NotImplemented", "501", "XNotImplemented", "MethodNotAllowed", "405"}
_SOURCE_GONE = {"NoSuchKey", "404", "PreconditionFailed", "412", "InvalidRange", "416"}


def digest(body: Buffer) -> bytes:
    """The digest that decides whether a part is unchanged (SHA-256, releases the GIL)."""
    return hashlib.sha256(body).digest()


@dataclass(frozen=True)
class DurableFile:
    """A file whose multipart upload completed: where it is and what each part held."""

    key: str
    etag: str
    size: int
    part_size: int
    digests: tuple[bytes, ...]


def reusable(previous: DurableFile | None, key: str, size: int, part_size: int) -> bool:
    """Whether parts of ``previous`` may stand in for parts of a new upload to ``key``: same
    size and part size (unchanged tensors then sit at the same offsets), another object."""
    return (
        previous is not None
        and previous.key != key
        and previous.size == size
        and previous.part_size == part_size
        and bool(previous.etag)
    )


def unchanged(previous: DurableFile, index: int, part_digest: bytes) -> bool:
    """Whether part ``index`` (0-based) holds what the durable copy's part holds."""
    return index < len(previous.digests) and previous.digests[index] == part_digest


def copy_range(index: int, size: int, part_size: int) -> str:
    """``CopySourceRange`` for part ``index``: ``bytes=first-last`` (inclusive)."""
    start = index * part_size
    return f"bytes={start}-{min(start + part_size, size) - 1}"


CopyFailure = Literal["unsupported", "source", "other"]


def copy_failure(code: str) -> CopyFailure:
    """Why an UploadPartCopy failed, from its error code: the server cannot copy parts at all
    ("unsupported": stop trying), the source is gone or no longer the object recorded, e.g.
    deleted by retention or rewritten ("source": send this part, forget that source), or
    anything else, a throttle, a server error, a refusal ("other": send this part, keep the
    record: the next part may copy)."""
    if code in _UNSUPPORTED:
        return "unsupported"
    return "source" if code in _SOURCE_GONE else "other"


class PartMemory:
    """The durable parts of each path, and whether this store uses them (thread-safe)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._files: dict[str, DurableFile] = {}
        self._lock = threading.Lock()

    def get(self, path: str) -> DurableFile | None:
        with self._lock:
            return self._files.get(path) if self.enabled else None

    def remember(self, path: str, durable: DurableFile) -> None:
        with self._lock:
            if self.enabled:
                self._files[path] = durable

    def forget(self, path: str, key: str) -> None:
        """Drop the record of ``path`` if it still names ``key`` (a newer one stays)."""
        with self._lock:
            if path in self._files and self._files[path].key == key:
                del self._files[path]

    def disable(self, why: str) -> None:
        with self._lock:
            if not self.enabled:
                return
            self.enabled = False
            self._files.clear()
        log.warning("spotrun: delta uploads off for this run, every part is sent: %s", why)
