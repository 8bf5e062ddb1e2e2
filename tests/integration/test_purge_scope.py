"""``spotrun purge`` (what deleteOnJobDeletion runs) deletes one job's checkpoint layout and
nothing else, and refuses a prefix holding another job's checkpoints (issue 10 item 6).
Against the real S3 server, and a local directory (a PVC) with the same rules."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from spotrun import layout
from tests.integration.s3util import SPOTRUN

pytestmark = pytest.mark.integration

STEP_A = layout.step_dirname(100)
STEP_B = layout.step_dirname(200)


def _manifest(job: str | None) -> bytes:
    return json.dumps({"format_version": 1, "step": 100, "files": [], "job": job}).encode()


def _purge(
    target: str, env: dict[str, str], job: str = "team/a"
) -> subprocess.CompletedProcess[str]:
    namespace, name = job.split("/")
    return subprocess.run(
        [SPOTRUN, "purge", target],
        env={**env, "SPOTRUN_NAMESPACE": namespace, "SPOTRUN_JOB": name},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _keys(client: Any, bucket: str) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def _env(s3) -> dict[str, str]:  # type: ignore[no-untyped-def]
    import os

    return {**os.environ, **s3.env()}


def test_purge_deletes_only_the_jobs_checkpoints_and_leaves_unrelated_objects(  # type: ignore[no-untyped-def]
    s3, s3_bucket: str
) -> None:
    client = s3.client()
    own = {
        f"jobs/a/checkpoints/{STEP_A}/tensors.safetensors": b"x" * 10,
        f"jobs/a/checkpoints/{STEP_A}/MANIFEST.json": _manifest("team/a"),
        f"jobs/a/checkpoints/{STEP_B}/MANIFEST.json": _manifest(None),  # older spotrun
        f"jobs/a/checkpoints/.tmp-{STEP_B}-abc/state.json": b"{}",
    }
    kept = {
        "jobs/a/dataset/train.csv": b"1,2",
        "jobs/a/checkpoints/README": b"notes",
        "jobs/ab/checkpoints/" + STEP_A + "/MANIFEST.json": _manifest("team/ab"),
        "elsewhere.txt": b"x",
    }
    for key, body in {**own, **kept}.items():
        client.put_object(Bucket=s3_bucket, Key=key, Body=body)
    upload = client.create_multipart_upload(
        Bucket=s3_bucket, Key=f"jobs/a/checkpoints/{STEP_B}/tensors.safetensors"
    )
    done = _purge(f"s3://{s3_bucket}/jobs/a", _env(s3))
    assert done.returncode == 0, done.stderr
    assert _keys(client, s3_bucket) == set(kept)
    uploads = client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert upload["UploadId"] not in {u["UploadId"] for u in uploads}


@pytest.mark.parametrize("other", ["nested", "manifest"])
def test_purge_refuses_a_prefix_holding_another_jobs_checkpoints(  # type: ignore[no-untyped-def]
    s3, s3_bucket: str, other: str
) -> None:
    client = s3.client()
    keys = {
        f"team/checkpoints/{STEP_A}/MANIFEST.json": _manifest("team/a"),
        f"team/checkpoints/{STEP_A}/tensors.safetensors": b"x",
    }
    if other == "nested":  # another job's prefix lies under this one
        keys[f"team/b/checkpoints/{STEP_B}/MANIFEST.json"] = _manifest("team/b")
    else:  # another job wrote into the same prefix
        keys[f"team/checkpoints/{STEP_B}/MANIFEST.json"] = _manifest("team/b")
    for key, body in keys.items():
        client.put_object(Bucket=s3_bucket, Key=key, Body=body)
    refused = _purge(f"s3://{s3_bucket}/team", _env(s3))
    assert refused.returncode != 0
    assert "refusing to purge, nothing deleted" in refused.stderr
    assert f"s3://{s3_bucket}/team" in refused.stderr
    assert ("team/b/checkpoints/" if other == "nested" else "team/b") in refused.stderr
    assert _keys(client, s3_bucket) == set(keys)


def test_purge_of_a_directory_follows_the_same_rules(tmp_path: Path) -> None:
    import os

    root = tmp_path / "pvc"
    ours = root / layout.CHECKPOINTS / STEP_A
    ours.mkdir(parents=True)
    (ours / layout.MANIFEST).write_bytes(_manifest("team/a"))
    (ours / layout.TENSORS).write_bytes(b"x")
    (root / layout.CHECKPOINTS / f".tmp-{STEP_B}-x").mkdir()
    (root / "results.csv").write_text("keep me")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me too")
    (root / layout.CHECKPOINTS / STEP_B).symlink_to(outside)  # a link: removed, not followed
    done = _purge(str(root), dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in root.iterdir()) == [layout.CHECKPOINTS, "results.csv"]
    assert list((root / layout.CHECKPOINTS).iterdir()) == []
    assert (outside / "precious").read_text() == "keep me too"

    nested = root / "b" / layout.CHECKPOINTS / STEP_B
    nested.mkdir(parents=True)
    (nested / layout.MANIFEST).write_bytes(_manifest("team/b"))
    ours.mkdir(parents=True)
    (ours / layout.MANIFEST).write_bytes(_manifest("team/a"))
    refused = _purge(str(root), dict(os.environ))
    assert refused.returncode != 0 and "b/checkpoints/" in refused.stderr
    assert (ours / layout.MANIFEST).exists() and (nested / layout.MANIFEST).exists()
