"""The S3 server through boto3, configured only from `hack/cluster --process env`."""

from __future__ import annotations

import os
import subprocess

import boto3
import pytest

from localcluster import config

pytestmark = pytest.mark.e2e


def _env_from_hack_cluster() -> dict[str, str]:
    out = subprocess.run([str(config.HACK_DIR / "cluster"), "--process", "env"], check=True,
                         capture_output=True, text=True).stdout
    env = {}
    for line in out.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    return env


def test_multipart_put_get_list_delete(s3, monkeypatch):
    env = _env_from_hack_cluster()
    for key in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "AWS_DEFAULT_REGION"):
        monkeypatch.setitem(os.environ, key, env[key])
    bucket = env["SPOTRUN_TEST_BUCKET"]
    client = boto3.client("s3")  # endpoint, keys and region from the environment only
    part = os.urandom(5 * 1024 * 1024)
    key = "e2e/multipart.bin"

    upload = client.create_multipart_upload(Bucket=bucket, Key=key)
    parts = []
    for number, body in ((1, part), (2, b"tail")):
        etag = client.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"],
                                  PartNumber=number, Body=body)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"],
                                     MultipartUpload={"Parts": parts})

    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == part + b"tail"
    listed = client.list_objects_v2(Bucket=bucket, Prefix="e2e/")["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [(key, len(part) + 4)]
    client.delete_object(Bucket=bucket, Key=key)
    assert client.list_objects_v2(Bucket=bucket, Prefix="e2e/").get("KeyCount") == 0
