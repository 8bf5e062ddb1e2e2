"""``spotrun purge URI``: delete every checkpoint object of a job (its storage prefix).

Run by the operator's one-shot cleanup pod when a job with ``checkpoint.deleteOnJobDeletion``
is deleted. ``s3://bucket/prefix``: every object under ``prefix/`` (never a whole bucket:
an empty prefix is refused) and unfinished multipart uploads there; a local directory (a
mounted PVC): everything inside it (the directory itself stays, it is a mount point).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from .store import StoreError

log = logging.getLogger("spotrun")


def purge(uri: str) -> int:
    """Delete everything under ``uri``; returns how many objects (or entries) went."""
    if uri.startswith("s3://"):
        return _purge_s3(uri)
    if "://" in uri and not uri.startswith("file://"):
        raise StoreError(f"{uri!r}: expected s3://bucket/prefix or a local directory")
    return _purge_dir(Path(uri.removeprefix("file://")))


def _purge_s3(uri: str) -> int:
    from .s3store import S3Store, split_uri

    bucket, prefix = split_uri(uri)
    if not prefix:
        raise StoreError(
            f"{uri!r} is a whole bucket: refusing to delete it; give each job its own prefix "
            "(s3://bucket/prefix)"
        )
    store = S3Store(bucket, prefix)
    client, folder = store.client, f"{prefix}/"
    deleted = 0
    with store._errors():
        uploads = client.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket, Prefix=folder
        )
        for page in uploads:
            for upload in page.get("Uploads", []):
                client.abort_multipart_upload(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder)
        for page in pages:
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            for key in keys:  # one by one: some S3 servers lack DeleteObjects
                client.delete_object(Bucket=bucket, Key=key["Key"])
            deleted += len(keys)
    log.info("spotrun purge: deleted %d object(s) under %s", deleted, uri)
    return deleted


def _purge_dir(root: Path) -> int:
    if not root.is_dir():
        raise StoreError(f"{root}: no such directory")
    if root.resolve() == Path("/"):
        raise StoreError("refusing to empty /")
    entries = list(root.iterdir())
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    log.info("spotrun purge: removed %d entr(ies) under %s", len(entries), root)
    return len(entries)
