"""Checkpoints in S3-compatible storage (AWS, MinIO, Ceph, R2, GCS interop, versitygw).

Objects are ``<prefix>/checkpoints/<step folder>/<file>``, the same layout as on disk. Large
files move as parallel parts (multipart upload, ranged GETs); every part carries its CRC32C
where the server verifies it, and every file is checked against the manifest's CRC32C after
download. Credentials come only from the standard AWS chain (env, web identity, profile); the
endpoint from ``AWS_ENDPOINT_URL_S3`` (boto3 reads it) or the constructor.

Every call has an overall deadline, not only botocore's per-socket timeouts: ``call_timeout``
seconds plus the time the bytes take at ``min_rate`` (a whole multi-part transfer is one
deadline), and never past ``cap`` (the sidecar sets it to its grace deadline on SIGTERM).
A hanging or dribbling endpoint therefore costs a bounded, known time.

Uploads of a file the store uploaded before (same path, size and part size) send only the
parts whose SHA-256 changed; the others are copied server-side from the previous object
(``partdelta``; ``SPOTRUN_S3_DELTA=0`` sends everything). ``sent_bytes`` / ``copied_bytes``
count what each way moved.

Reads check the size HEAD reports before allocating: more than the caller's ``limit`` (the
manifest's size), or without a limit more than this machine's memory, raises OversizeError.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import bounded, checksum, layout, partdelta
from .extras import missing
from .podenv import PodEnv
from .store import OversizeError, StoreError

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    from .s3errors import explain
except ModuleNotFoundError as absent:  # only where S3 is used: a local run needs no boto3
    raise missing(absent, "an s3:// storage URI") from absent

log = logging.getLogger("spotrun")

Progress = Callable[[int], None]


@dataclass(frozen=True)
class TransferSettings:
    """Tuned by bench/s3_bench.py on loopback; override with SPOTRUN_S3_PART_MB/_CONCURRENCY."""

    part_size: int = 32 * 1024 * 1024
    concurrency: int = 8
    call_timeout: float = 30.0  # seconds any one call may take, plus its bytes at min_rate
    min_rate: float = 1024 * 1024  # bytes/s below which a transfer counts as hanging
    delta: bool = True  # copy unchanged parts from the previous upload (partdelta)

    @classmethod
    def from_env(cls) -> TransferSettings:
        env = PodEnv.from_env()
        part, conc, timeout = env.s3_part_mb, env.s3_concurrency, env.s3_call_timeout
        return cls(
            part_size=part * 1024 * 1024 if part is not None else cls.part_size,
            concurrency=conc if conc is not None else cls.concurrency,
            call_timeout=timeout if timeout is not None else cls.call_timeout,
            delta=env.s3_delta if env.s3_delta is not None else cls.delta,
        )


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, "some/prefix")."""
    if not uri.startswith("s3://"):
        raise StoreError(f"{uri!r} is not an s3:// URI")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise StoreError(f"{uri!r} names no bucket; use s3://bucket/prefix")
    return bucket, prefix.strip("/")


def make_client(endpoint: str | None, concurrency: int) -> Any:
    endpoint = (
        endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    )
    config = Config(
        # bounded: 3 tries of at most 5 s to connect and 20 s per read; the overall deadline
        # of each call (S3Store._budget) bounds the rest
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=20,
        max_pool_connections=max(concurrency * 2, 10),
        # spotrun verifies CRC32C itself; botocore's default CRC32 would cost CPU twice
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"} if endpoint else {},
    )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=region, config=config
    )


class S3Store:
    def __init__(
        self,
        bucket: str,
        prefix: str,
        endpoint: str | None = None,
        settings: TransferSettings | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.settings = settings or TransferSettings.from_env()
        self.client = make_client(endpoint, self.settings.concurrency)
        self.endpoint = str(self.client.meta.endpoint_url)
        self.uri = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        # the time.monotonic() no call may run past, asked as calls run (None: no cap)
        self.cap: Callable[[], float | None] | None = None
        self._send_checksums = True
        self._lock = threading.Lock()
        self.parts = partdelta.PartMemory(self.settings.delta)
        self.sent_bytes = 0  # payload bytes sent to S3 by uploads (parts and PUTs)
        self.copied_bytes = 0  # bytes of parts S3 copied from a previous object instead

    @classmethod
    def from_uri(cls, uri: str, endpoint: str | None = None) -> S3Store:
        bucket, prefix = split_uri(uri)
        return cls(bucket, prefix, endpoint)

    # -- keys ---------------------------------------------------------------------------

    def _dir_key(self) -> str:
        return f"{self.prefix}/{layout.CHECKPOINTS}/" if self.prefix else f"{layout.CHECKPOINTS}/"

    def key(self, name: str, path: str) -> str:
        return f"{self._dir_key()}{name}/{path}"

    def file_uri(self, name: str, path: str = "") -> str:
        return (
            f"s3://{self.bucket}/{self.key(name, path)}"
            if path
            else (f"s3://{self.bucket}/{self._dir_key()}{name}")
        )

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (BotoCoreError, ClientError) as e:
            raise explain(e, self.uri, self.endpoint) from e

    # -- deadlines ----------------------------------------------------------------------

    def _budget(self, nbytes: int = 0) -> bounded.Deadline:
        """When a call moving ``nbytes`` must end: its own allowance, never past the cap."""
        return bounded.within(
            self.settings.call_timeout + nbytes / self.settings.min_rate, self.cap
        )

    def _where(self, what: str) -> str:
        return f"{self.uri} at {self.endpoint}: S3 {what}"

    def call(self, method: str, nbytes: int = 0, **kwargs: Any) -> Any:
        """One client call under its overall deadline (DeadlineExceeded names the cause)."""
        fn = getattr(self.client, method)
        return bounded.call(lambda: fn(**kwargs), self._budget(nbytes), self._where(method))

    def list_pages(self, prefix: str, delimiter: str | None = None) -> Iterator[dict[str, Any]]:
        """The pages of ListObjectsV2 under ``prefix``, each call under its deadline."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            args["Delimiter"] = delimiter
        token: dict[str, Any] = {}
        while True:
            page = self.call("list_objects_v2", **args, **token)
            yield page
            if not page.get("IsTruncated") or not page.get("NextContinuationToken"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    # -- the Store protocol -------------------------------------------------------------

    def names(self) -> list[str]:
        out = []
        with self._errors():
            for page in self.list_pages(self._dir_key(), "/"):
                for common in page.get("CommonPrefixes", []):
                    out.append(common["Prefix"][len(self._dir_key()) :].rstrip("/"))
        return out

    def has_manifest(self, name: str) -> bool:
        try:
            self.call("head_object", Bucket=self.bucket, Key=self.key(name, layout.MANIFEST))
        except ClientError as e:
            if str(e.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise explain(e, self.uri, self.endpoint) from e
        except BotoCoreError as e:
            raise explain(e, self.uri, self.endpoint) from e
        return True

    def read(
        self,
        name: str,
        path: str,
        progress: Progress | None = None,
        limit: int | None = None,
    ) -> bytearray:
        key = self.key(name, path)
        with self._errors():
            try:
                head = self.call("head_object", Bucket=self.bucket, Key=key)
            except ClientError as e:
                if str(e.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey"):
                    raise FileNotFoundError(self.file_uri(name, path)) from None
                raise
            size = int(head["ContentLength"])
            refusal = oversize(size, limit, physical_memory())
            if refusal:
                raise OversizeError(f"{self.file_uri(name, path)}: {refusal}")
            blob = bytearray(size)
            view = memoryview(blob)
            ranges = _ranges(size, self.settings.part_size)

            def fetch(span: tuple[int, int]) -> None:
                start, end = span
                body = self.client.get_object(
                    Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}"
                )["Body"]
                offset = start
                for chunk in body.iter_chunks(1024 * 1024):
                    if offset + len(chunk) > end:
                        raise StoreError(f"{self.file_uri(name, path)}: more bytes than asked")
                    view[offset : offset + len(chunk)] = chunk
                    offset += len(chunk)
                if offset != end:
                    raise StoreError(f"{self.file_uri(name, path)}: short read at {offset}")
                if progress:
                    progress(end - start)

            if size == 0:
                return blob
            self._parallel(fetch, ranges, size, f"reading {self.file_uri(name, path)}")
        return blob

    def listing(self, name: str) -> dict[str, int]:
        """Every object in checkpoint folder ``name``: path inside the folder -> size."""
        folder = self.key(name, "")
        with self._errors():
            return {
                obj["Key"][len(folder) :]: int(obj["Size"])
                for page in self.list_pages(folder)
                for obj in page.get("Contents", [])
            }

    def delete(self, name: str) -> None:
        """Manifest first (the checkpoint stops counting), then the payload."""
        with self._errors():
            self.call("delete_object", Bucket=self.bucket, Key=self.key(name, layout.MANIFEST))
            for page in self.list_pages(self.key(name, "")):
                for obj in page.get("Contents", []):
                    self.call("delete_object", Bucket=self.bucket, Key=obj["Key"])

    # -- uploads ------------------------------------------------------------------------

    def upload_file(
        self, name: str, path: str, source: Path, progress: Progress | None = None
    ) -> None:
        """One file, as a single PUT or a parallel multipart upload, CRC32C per part."""
        with open(source, "rb", buffering=0) as f:
            self.upload_fd(name, path, f.fileno(), os.fstat(f.fileno()).st_size, progress)

    def upload_fd(
        self, name: str, path: str, fd: int, size: int, progress: Progress | None = None
    ) -> None:
        """``size`` bytes of an open file (the caller opened it without following links)."""
        key = self.key(name, path)
        with self._errors():
            if size <= self.settings.part_size:
                body = os.pread(fd, size, 0) if size else b""
                self._put(key, body)
                self._count(sent=size)
                if progress:
                    progress(size)
                return
            self._multipart(path, key, fd, size, progress)

    def put_bytes(self, name: str, path: str, body: bytes) -> None:
        with self._errors():
            self._put(self.key(name, path), body)

    def _put(self, key: str, body: bytes) -> None:
        extra = (
            {"ChecksumCRC32C": checksum.to_s3(checksum.of_bytes(body))}
            if (self._send_checksums)
            else {}
        )
        try:
            self.call("put_object", len(body), Bucket=self.bucket, Key=key, Body=body, **extra)
        except ClientError as e:
            if not extra or not _checksum_unsupported(e):
                raise
            self._send_checksums = False  # an older S3 clone: rely on the manifest's CRC32C
            self.call("put_object", len(body), Bucket=self.bucket, Key=key, Body=body)

    def _count(self, sent: int = 0, copied: int = 0) -> None:
        with self._lock:
            self.sent_bytes += sent
            self.copied_bytes += copied

    def _multipart(
        self, path: str, key: str, fd: int, size: int, progress: Progress | None
    ) -> None:
        part_size = self.settings.part_size
        previous = self.parts.get(path)
        if not partdelta.reusable(previous, key, size, part_size):
            previous = None
        # an upload that copies parts goes without part checksums: versitygw 1.8 gives a
        # copied part the source object's whole checksum and then refuses the completion
        # (the manifest's CRC32C, checked on every restore, still covers every byte)
        use_crc = self._send_checksums and previous is None
        track = self.parts.enabled
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if use_crc:
            args["ChecksumAlgorithm"] = "CRC32C"
        created = self.call("create_multipart_upload", **args)
        upload_id = created["UploadId"]
        ranges = _ranges(size, part_size)
        parts: list[dict[str, Any]] = [{} for _ in ranges]
        digests: list[bytes] = [b""] * len(ranges)
        copied = [False] * len(ranges)

        def send(index: int) -> None:
            start, end = ranges[index]
            body = os.pread(fd, end - start, start)
            if track:
                digests[index] = partdelta.digest(body)
            answer = None
            if previous is not None and partdelta.unchanged(previous, index, digests[index]):
                answer = self._copy_part(path, key, upload_id, index, previous, size)
            if answer is not None:
                copied[index] = True
                self._count(copied=end - start)
            else:  # a part's checksum only when it is sent (a copied part's is S3's business)
                extra = _integrity(body, use_crc, previous is not None)
                answer = self.client.upload_part(
                    **_part_args(self.bucket, key, upload_id, index), Body=body, **extra
                )
                self._count(sent=end - start)
            part: dict[str, Any] = {"PartNumber": index + 1, "ETag": answer["ETag"]}
            if use_crc:  # no part is copied then: ``extra`` holds this part's CRC32C
                part["ChecksumCRC32C"] = answer.get("ChecksumCRC32C") or extra["ChecksumCRC32C"]
            parts[index] = part
            if progress:
                progress(end - start)

        try:
            what = f"uploading s3://{self.bucket}/{key}"
            self._parallel(send, list(range(len(ranges))), size, what)
            done = self.call(
                "complete_multipart_upload",
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            if track:
                etag = str(done.get("ETag") or "")
                durable = partdelta.DurableFile(key, etag, size, part_size, tuple(digests))
                self.parts.remember(path, durable)
            if previous is not None:
                log.info(
                    "spotrun: s3://%s/%s: %d of %d parts unchanged, copied by S3 from %s; "
                    "%.1f MiB sent",
                    self.bucket,
                    key,
                    sum(copied),
                    len(ranges),
                    previous.key,
                    sum(e - s for (s, e), c in zip(ranges, copied, strict=True) if not c) / 2**20,
                )
        except BaseException:
            if previous is not None and any(copied):  # the retry sends every part
                self.parts.forget(path, previous.key)
            try:
                self.call("abort_multipart_upload", Bucket=self.bucket, Key=key, UploadId=upload_id)
            except (BotoCoreError, ClientError, StoreError):
                pass  # the bucket's lifecycle rule or the next retention sweep cleans it up
            raise

    def _copy_part(
        self,
        path: str,
        key: str,
        upload_id: str,
        index: int,
        previous: partdelta.DurableFile,
        size: int,
    ) -> dict[str, Any] | None:
        """Part ``index`` made by S3 from the same range of ``previous`` (UploadPartCopy, only
        while its ETag is unchanged); None when S3 would not: the caller sends the part."""
        if self.parts.get(path) is not previous:
            return None  # forgotten meanwhile (gone, or the server cannot copy)
        try:
            answer = self.client.upload_part_copy(
                **_part_args(self.bucket, key, upload_id, index),
                CopySource={"Bucket": self.bucket, "Key": previous.key},
                CopySourceRange=partdelta.copy_range(index, size, previous.part_size),
                CopySourceIfMatch=previous.etag,
            )
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            source = f"s3://{self.bucket}/{previous.key}"
            failure = partdelta.copy_failure(code)
            if failure == "unsupported":
                self.parts.disable(f"{self.endpoint} answered {code} to UploadPartCopy")
            elif failure == "other":
                log.info("spotrun: copying part %d from %s failed (%s); sending it", index + 1,
                         source, code)
            elif self.parts.get(path) is previous:
                self.parts.forget(path, previous.key)
                log.info(
                    "spotrun: cannot copy unchanged parts from %s (%s: gone or rewritten, "
                    "e.g. by retention); sending the parts of %s instead",
                    source,
                    code,
                    path,
                )
            return None
        result: dict[str, Any] = answer.get("CopyPartResult") or {}
        return result if result.get("ETag") else None  # no ETag to complete with: send it

    def _parallel(
        self, fn: Callable[[Any], None], items: list[Any], nbytes: int, what: str
    ) -> None:
        """All parts of one transfer under one deadline (its bytes at ``min_rate``)."""
        bounded.run_all(fn, items, self.settings.concurrency, self._budget(nbytes), what)


def physical_memory() -> int | None:
    """Bytes of RAM on this machine (None where the platform cannot tell)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def oversize(size: int, limit: int | None, memory: int | None) -> str | None:
    """Why an object of ``size`` bytes must not be read (None when it may): more than the
    caller's ``limit``, or, with no limit, more than the machine's memory (a buffer that big
    cannot be allocated, so the object is hostile or broken, never a checkpoint to load)."""
    if limit is not None and size > limit:
        return f"{size} bytes, more than the {limit} its reader allows; refusing to read it"
    if limit is None and memory is not None and size > memory:
        return (
            f"{size} bytes, more than this machine's {memory} bytes of memory; refusing to "
            "allocate it (a broken or hostile object)"
        )
    return None


def _integrity(body: bytes, use_crc: bool, delta: bool) -> dict[str, str]:
    """What lets S3 refuse a part corrupted on its way: its CRC32C, or in a delta upload
    (which goes without part checksums) its Content-MD5, which every S3 checks."""
    if use_crc:
        return {"ChecksumCRC32C": checksum.to_s3(checksum.of_bytes(body))}
    if delta:
        md5 = hashlib.md5(body, usedforsecurity=False).digest()
        return {"ContentMD5": base64.b64encode(md5).decode()}
    return {}


def _part_args(bucket: str, key: str, upload_id: str, index: int) -> dict[str, Any]:
    """What names part ``index`` (0-based) of a multipart upload."""
    return {"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": index + 1}


def _ranges(size: int, part: int) -> list[tuple[int, int]]:
    return [(start, min(start + part, size)) for start in range(0, size, part)] or [(0, 0)]


def _checksum_unsupported(error: ClientError) -> bool:
    code = str(error.response.get("Error", {}).get("Code", ""))
    return code in ("NotImplemented", "InvalidArgument", "InvalidRequest")
