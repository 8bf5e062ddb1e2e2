"""``spotrun purge URI``: delete one job's checkpoints, and nothing else.

Run by the operator's one-shot cleanup pod when a job with ``checkpoint.deleteOnJobDeletion``
is deleted. Only the checkpoint layout goes: ``<prefix>/checkpoints/step-*/`` and the
``.tmp-*`` leftovers beside them (and, in S3, unfinished multipart uploads there), and the
sidecars' ``<prefix>/attempts/attempt-*.json`` markers (``handoff``); any other
object or file under the prefix stays. Manifests go first, so a purge cut short never leaves
a manifest naming deleted files.

It refuses, deleting nothing, a prefix that holds another job's checkpoints: checkpoint
folders deeper under it (``<prefix>/<x>/.../checkpoints/step-*/MANIFEST.json``: the prefix is
a parent of another job's), or manifests whose ``job`` names another job than the purging one
(``SPOTRUN_NAMESPACE``/``SPOTRUN_JOB``; without them, manifests naming two jobs). Manifests
without a ``job`` (older spotrun) count as the purging job's. ``s3://bucket`` without a
prefix is refused too. The same rules hold for a local directory (a mounted PVC), which stays.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import layout
from .podenv import PodEnv
from .store import OversizeError, StoreError

if TYPE_CHECKING:
    from .s3store import S3Store

log = logging.getLogger("spotrun")

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# the checkpoint layout, and the attempt-ended markers of the warm start (spotrun.handoff)
_IN_SCOPE = re.compile(
    r"^checkpoints/(step-\d{12}|\.tmp-[^/]*)(/|$)|^attempts/attempt-\d{12}\.json$"
)
_NESTED = re.compile(r"^(.+)/checkpoints/step-\d{12}/MANIFEST\.json$")
_OWN_MANIFEST = re.compile(r"^checkpoints/(step-\d{12})/MANIFEST\.json$")


class PurgeRefused(StoreError):
    """The prefix holds another job's checkpoints: nothing was deleted."""


@dataclass(frozen=True)
class Plan:
    delete: list[str]  # paths relative to the prefix, every manifest first
    refusal: str | None  # why nothing may be deleted (None: go ahead)


def in_scope(rel: str) -> bool:
    """Whether a path relative to the prefix belongs to the checkpoint layout purge deletes."""
    return _IN_SCOPE.match(rel) is not None


def own_manifests(rels: Iterable[str]) -> list[str]:
    """The step folders directly under ``checkpoints/`` that hold a manifest."""
    return sorted(m.group(1) for rel in rels if (m := _OWN_MANIFEST.match(rel)))


def plan(rels: list[str], jobs: Mapping[str, str | None], job: str | None, where: str) -> Plan:
    """What to delete under ``where`` (pure). ``rels``: every path under the prefix;
    ``jobs``: the ``job`` each own manifest names (step folder -> job or None); ``job``: the
    purging job (``namespace/name``) or None when unknown."""
    nested = sorted(
        {f"{where}/{m.group(1)}/checkpoints/" for rel in rels if (m := _NESTED.match(rel))}
    )
    if nested:
        found = f"another job's checkpoints deeper under it ({_few(nested)})"
        return Plan([], _refusal(where, found))
    named = sorted({j for j in jobs.values() if j is not None})
    if job is not None:
        others = [j for j in named if j != job]
    else:  # the purging job is unknown: one job's checkpoints may go, two jobs' may not
        others = named if len(named) > 1 else []
    if others:
        whose = ", ".join(f"{folder} of {j}" for folder, j in sorted(jobs.items()) if j in others)
        return Plan([], _refusal(where, f"checkpoints of other jobs ({_few([whose])})"))
    doomed = [rel for rel in rels if in_scope(rel)]
    manifests = {rel for rel in doomed if rel.endswith("/" + layout.MANIFEST)}
    return Plan(sorted(manifests) + [rel for rel in doomed if rel not in manifests], None)


def _few(items: list[str]) -> str:
    return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")


def _refusal(where: str, what: str) -> str:
    return (
        f"{where} holds {what}: refusing to purge, nothing deleted; give each job its own "
        "prefix (not one that contains another job's) and delete the rest by hand"
    )


def manifest_job(blob: bytes | bytearray) -> str | None:
    """The ``job`` a manifest names; None for an old or unreadable one (pure)."""
    try:
        data = json.loads(blob)
    except (ValueError, RecursionError):
        return None
    value = data.get("job") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def purging_job(environ: Mapping[str, str] | None = None) -> str | None:
    """``namespace/name`` of the job being purged, as its manifests record it."""
    return PodEnv.from_env(environ).job_key


def purge(uri: str, job: str | None = None) -> int:
    """Delete the checkpoint layout under ``uri``; returns how many objects (or entries) went.
    ``job`` defaults to the environment's (``purging_job``). Raises PurgeRefused (nothing
    deleted) when the prefix holds another job's checkpoints."""
    job = job or purging_job()
    if uri.startswith("s3://"):
        return _purge_s3(uri, job)
    if "://" in uri and not uri.startswith("file://"):
        raise StoreError(f"{uri!r}: expected s3://bucket/prefix or a local directory")
    return _purge_dir(Path(uri.removeprefix("file://")), job)


def _decide(plan_: Plan) -> list[str]:
    if plan_.refusal is not None:
        raise PurgeRefused(plan_.refusal)
    return plan_.delete


def _purge_s3(uri: str, job: str | None) -> int:
    from .s3store import S3Store, split_uri

    bucket, prefix = split_uri(uri)
    if not prefix:
        raise StoreError(
            f"{uri!r} is a whole bucket: refusing to delete it; give each job its own prefix "
            "(s3://bucket/prefix)"
        )
    store = S3Store(bucket, prefix)
    folder = f"{prefix}/"
    with store._errors():
        rels = [
            obj["Key"][len(folder) :]
            for page in store.list_pages(folder)
            for obj in page.get("Contents", [])
        ]
        jobs: dict[str, str | None] = {}
        for name in own_manifests(rels):
            try:
                jobs[name] = manifest_job(
                    store.read(name, layout.MANIFEST, limit=MAX_MANIFEST_BYTES)
                )
            except (FileNotFoundError, OversizeError):
                jobs[name] = None
        doomed = _decide(plan(rels, jobs, job, uri))
        _abort_uploads(store, folder)
        for rel in doomed:  # one by one: some S3 servers lack DeleteObjects
            store.call("delete_object", Bucket=bucket, Key=folder + rel)
    log.info("spotrun purge: deleted %d checkpoint object(s) under %s", len(doomed), uri)
    return len(doomed)


def _abort_uploads(store: S3Store, folder: str) -> None:
    args: dict[str, Any] = {"Bucket": store.bucket, "Prefix": f"{folder}{layout.CHECKPOINTS}/"}
    while True:
        page = store.call("list_multipart_uploads", **args)
        for upload in page.get("Uploads", []):
            if in_scope(upload["Key"][len(folder) :]):
                store.call(
                    "abort_multipart_upload",
                    Bucket=store.bucket,
                    Key=upload["Key"],
                    UploadId=upload["UploadId"],
                )
        if not page.get("IsTruncated"):
            return
        args = {
            **args,
            "KeyMarker": page.get("NextKeyMarker", ""),
            "UploadIdMarker": page.get("NextUploadIdMarker", ""),
        }


def _walk(root: Path) -> list[str]:
    """Every file and folder under ``root`` as a relative POSIX path (links not followed)."""
    out = []
    for top, dirs, files in os.walk(root, followlinks=False):
        base = Path(top).relative_to(root)
        out += [(base / n).as_posix() for n in (*dirs, *files)]
    return out


def _read_small(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return b""
    with os.fdopen(fd, "rb") as f:
        return f.read(MAX_MANIFEST_BYTES) if Path(path).is_file() else b""


def _purge_dir(root: Path, job: str | None) -> int:
    if not root.is_dir():
        raise StoreError(f"{root}: no such directory")
    if root.resolve() == Path("/"):
        raise StoreError("refusing to empty /")
    rels = _walk(root)
    jobs = {
        name: manifest_job(_read_small(root / layout.CHECKPOINTS / name / layout.MANIFEST))
        for name in own_manifests(rels)
    }
    doomed = _decide(plan(rels, jobs, job, str(root)))
    for rel in doomed:
        if rel.endswith("/" + layout.MANIFEST):
            (root / rel).unlink(missing_ok=True)
    folders = [rel for rel in doomed if rel.count("/") == 1]  # checkpoints/<folder>
    for rel in folders:
        path = root / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    log.info("spotrun purge: removed %d checkpoint folder(s) under %s", len(folders), root)
    return len(folders)
