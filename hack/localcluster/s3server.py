"""The S3-compatible server (versitygw, posix backend) on loopback, and its ready bucket."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from . import config, procs
from .state import S3Info

NAME = "s3"
BUCKET = "spotrun-test"
REGION = "us-east-1"
# Fixed, loopback-only credentials: a shell that evaluated `hack/cluster --process env` stays valid.
ACCESS_KEY = "spotrun-local"
SECRET_KEY = "spotrun-local-secret"


def client(info: S3Info) -> object:
    """A boto3 S3 client for the local server (path-style, quick retries)."""
    return boto3.client(
        "s3",
        endpoint_url=info.endpoint,
        aws_access_key_id=info.access_key,
        aws_secret_access_key=info.secret_key,
        region_name=info.region,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 2},
            connect_timeout=2,
            read_timeout=30,
        ),
    )


def _xattrs_work(directory: Path) -> bool:
    probe = directory / ".xattr-probe"
    probe.touch()
    try:
        os.setxattr(probe, "user.spotrun", b"1")
        return True
    except OSError:
        return False
    finally:
        probe.unlink()


def is_ready(info: S3Info) -> bool:
    try:
        client(info).list_buckets()  # type: ignore[attr-defined]
    except (BotoCoreError, ClientError):
        return False
    return True


def running(state: Path, info: S3Info | None) -> bool:
    return info is not None and procs.running_pid(state, NAME) is not None and is_ready(info)


def start(state: Path, timeout: float = 60.0) -> S3Info:
    """Start versitygw on a free loopback port with fresh data; wait until it serves S3."""
    shutil.rmtree(state / "s3", ignore_errors=True)
    (state / "s3" / "data").mkdir(parents=True)
    info = S3Info(
        port=procs.free_port(),
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        region=REGION,
        bucket=BUCKET,
    )
    launch(state, info, timeout)
    client(info).create_bucket(Bucket=info.bucket)  # type: ignore[attr-defined]
    return info


def launch(state: Path, info: S3Info, timeout: float = 60.0) -> None:
    """Run versitygw for ``info`` over the data already in the state dir (a restart keeps
    every object, like a real server coming back); wait until it serves S3."""
    data = state / "s3" / "data"
    argv = [
        str(config.binary("versitygw")),
        "--port", f"127.0.0.1:{info.port}",
        "--region", info.region,
        "--quiet",
        "posix",
    ]
    meta = state / "s3" / "meta"
    if meta.is_dir() or not _xattrs_work(data):
        meta.mkdir(exist_ok=True)
        argv += ["--sidecar", str(meta)]
    argv.append(str(data))
    env = dict(os.environ, ROOT_ACCESS_KEY=info.access_key, ROOT_SECRET_KEY=info.secret_key)
    pid = procs.start(state, NAME, argv, env=env)
    deadline = time.monotonic() + timeout
    while not is_ready(info):
        if not procs.is_alive(pid):
            raise RuntimeError(
                f"the S3 server (versitygw) exited at start; see {state / 'logs' / 's3.log'}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"the S3 server did not answer within {timeout:.0f}s")
        time.sleep(0.1)


def stop(state: Path) -> None:
    procs.stop(state, NAME)
