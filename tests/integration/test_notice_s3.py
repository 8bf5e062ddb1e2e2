"""SIGTERM's notice used against the real S3 server. Under the sidecar, in a pod's order: the
trainer gets SIGTERM, trains on with the upload time the sidecar reported
(``.spotrun-durable.json``), saves, exits; only then does the sidecar get its SIGTERM (a
native sidecar's), upload the final checkpoint and report it saved. In direct mode the
trainer's own uploader measures the upload, and the final save is in S3 when it exits."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from spotrun import podnotes, reader
from spotrun.localstore import LocalStore
from spotrun.s3store import S3Store
from tests.integration.s3util import Sidecar, run_env, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("s3_credentials")]

SCRIPT = Path(__file__).with_name("notice_trainer.py")
GRACE = "12"


def _trained_on(log: Path, saved: int) -> None:
    """The log planned with a measured save+upload, and ``saved`` came steps after the signal."""
    lines = log.read_text().splitlines()
    planned = [line for line in lines if "SIGTERM: deadline in" in line]
    assert planned and re.search(r"save\+upload measured [\d.]+ s: training on until", planned[0])
    signalled = int(next(m[1] for ln in lines if (m := re.search(r"signal at step (\d+)", ln))))
    print(f"{saved - signalled} steps after SIGTERM; {planned[0]}")
    assert saved - signalled > 1  # trained on through the notice


def _trainer(directory: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, str(SCRIPT), str(directory), "--steps", "100000", "--mb", "4"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )


def test_the_trainer_trains_on_with_the_sidecars_upload_time_and_the_save_lands_in_s3(
    s3: Any, s3_bucket: str, tmp_path: Path
) -> None:
    uri = f"s3://{s3_bucket}/jobs/notice"
    directory = tmp_path / "node"
    env = run_env(s3.env(), directory, uri, SPOTRUN_UPLOAD="sidecar", SPOTRUN_GRACE_SECONDS=GRACE,
                  SPOTRUN_SAVE_AT_ONCE="0")
    sidecar = Sidecar(env, tmp_path)
    out = tmp_path / "trainer.log"
    trainer: subprocess.Popen[bytes] | None = None
    try:
        wait_for(sidecar.started, timeout=600, what="the sidecar's startup probe")
        trainer = _trainer(directory, env, out)
        # a step the trainer saved is in S3 and the sidecar said when: an upload time measured
        wait_for(lambda: (podnotes.read_durable(directory) or (0, 0))[0] >= 10, timeout=600,
                 what="the sidecar's note of an uploaded step")
        trainer.send_signal(signal.SIGTERM)
        assert trainer.wait(timeout=300) == 0, out.read_text()[-3000:]
        sidecar.proc.send_signal(signal.SIGTERM)  # a native sidecar's, once the trainer exited
        assert sidecar.proc.wait(timeout=300) == 0
    finally:
        if trainer is not None and trainer.poll() is None:
            trainer.kill()
        sidecar.kill()
    local = reader.newest_valid(LocalStore(directory))
    assert local is not None and local.manifest.reason == "preemption"
    _trained_on(out, local.step)
    message = json.loads(sidecar.message.read_text())
    assert message == {**message, "step": local.step, "finalSaved": True}
    remote = S3Store.from_uri(uri, endpoint=s3.endpoint_url)
    assert reader.load_verified(remote, local.name).step == local.step


def test_in_direct_mode_the_trainers_own_upload_time_is_planned_with(
    s3: Any, s3_bucket: str, tmp_path: Path
) -> None:
    uri = f"s3://{s3_bucket}/jobs/notice-direct"
    directory = tmp_path / "node"
    remote = S3Store.from_uri(uri, endpoint=s3.endpoint_url)
    out = tmp_path / "trainer.log"
    env = run_env(s3.env(), directory, uri, SPOTRUN_GRACE_SECONDS=GRACE,
                  SPOTRUN_SAVE_AT_ONCE="0")  # no sidecar: direct
    trainer = _trainer(directory, env, out)
    try:
        wait_for(lambda: (found := reader.newest_valid(remote)) and found.step >= 10,
                 timeout=600, what="a checkpoint of the trainer in S3")
        trainer.send_signal(signal.SIGTERM)
        assert trainer.wait(timeout=300) == 0, out.read_text()[-3000:]
    finally:
        if trainer.poll() is None:
            trainer.kill()
    local = reader.newest_valid(LocalStore(directory))
    assert local is not None and local.manifest.reason == "preemption"
    _trained_on(out, local.step)
    assert f"final checkpoint (step {local.step}) is durable" in out.read_text()
    assert reader.load_verified(remote, local.name).step == local.step
