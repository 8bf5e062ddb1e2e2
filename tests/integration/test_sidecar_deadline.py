"""The sidecar's end when no final checkpoint comes, against the real S3 server: a trainer that
is alive but never saves (frozen with SIGSTOP) is given up on at the grace deadline, one that
died without saving as soon as S3 holds its newest checkpoint. Either way the sidecar exits 0
with ``finalSaved: false``, the reason, and the step S3 really holds."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from spotrun import reader
from spotrun.localstore import LocalStore
from spotrun.s3store import S3Store
from tests.integration.s3util import Sidecar, probe, run_env, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("s3_credentials")]

TOY = Path(__file__).with_name("toy_trainer.py")


def status_step(port: int) -> int:
    code, body = probe(port, "/status")
    step = json.loads(body).get("step") if code == 200 else None
    return step if isinstance(step, int) else -1


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else "(none)"


def end_without_final_save(
    s3: Any, bucket: str, tmp_path: Path, grace: str, freeze: bool
) -> tuple[dict[str, Any], int, int]:
    """A sidecar and a trainer that saves every 5 steps; once S3 holds a few checkpoints the
    trainer is frozen (alive, never saving) or killed, then the sidecar gets SIGTERM.
    Returns (the termination message, the sidecar's exit code, the newest local step)."""
    directory = tmp_path / "node"
    env = run_env(s3.env(), directory, f"s3://{bucket}/jobs/end", SPOTRUN_UPLOAD="sidecar",
                  SPOTRUN_GRACE_SECONDS=grace)
    sidecar = Sidecar(env, tmp_path)
    trainer: subprocess.Popen[bytes] | None = None
    try:
        wait_for(sidecar.started, what="the sidecar's startup probe")
        with open(tmp_path / "trainer.log", "wb") as log:
            trainer = subprocess.Popen(
                [sys.executable, str(TOY), str(directory), "--mb", "1", "--interval", "5"],
                env=env, stdout=log, stderr=subprocess.STDOUT)
        try:  # a bound for a hang, not a timing: under heavy load the start alone took minutes
            wait_for(lambda: status_step(sidecar.port) >= 15 or trainer.poll() is not None,
                     timeout=600, what="three checkpoints in S3")
        except TimeoutError:
            raise AssertionError(f"S3 holds step {status_step(sidecar.port)} after 600 s; "
                                 f"trainer log: {_tail(tmp_path / 'trainer.log')}") from None
        assert trainer.poll() is None, f"the trainer exited: {_tail(tmp_path / 'trainer.log')}"
        if freeze:
            trainer.send_signal(signal.SIGSTOP)  # holds its lock: the sidecar must wait
        else:
            trainer.kill()
            trainer.wait()
        newest = reader.newest_valid(LocalStore(directory))
        assert newest is not None
        try:  # a bound for a hang: on a busy disk one S3 call may stall for its timeouts
            wait_for(lambda: status_step(sidecar.port) == newest.step, timeout=600,
                     what="S3 to hold the newest")
        except TimeoutError:
            raise AssertionError(f"S3 holds step {status_step(sidecar.port)}, not the newest "
                                 f"{newest.step}, after 600 s; sidecar log: "
                                 f"{_tail(sidecar.log)}") from None
        sidecar.proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        code = sidecar.proc.wait(timeout=300)
        print(f"the sidecar exited {time.monotonic() - began:.1f}s after SIGTERM (grace {grace}s)")
    finally:
        if trainer is not None and trainer.poll() is None:
            trainer.kill()
            trainer.send_signal(signal.SIGCONT)
            trainer.wait()
        sidecar.kill()
    bucket_store = S3Store.from_uri(f"s3://{bucket}/jobs/end", endpoint=s3.endpoint_url)
    remote = reader.newest_valid(bucket_store)
    assert remote is not None and remote.step == newest.step
    return json.loads(sidecar.message.read_text()), code, newest.step


def test_sidecar_gives_up_at_the_grace_deadline_on_a_trainer_that_never_saves(
    s3: Any, s3_bucket: str, tmp_path: Path
) -> None:
    message, code, newest = end_without_final_save(s3, s3_bucket, tmp_path, "6", freeze=True)
    assert code == 0
    assert message["finalSaved"] is False
    assert message["note"].startswith("grace deadline reached"), message
    assert message["step"] == newest


def test_sidecar_stops_waiting_once_the_trainer_died_without_saving(
    s3: Any, s3_bucket: str, tmp_path: Path
) -> None:
    # a grace of 10 minutes: an exit within the wait above is not the deadline's doing
    message, code, newest = end_without_final_save(s3, s3_bucket, tmp_path, "600", freeze=False)
    assert code == 0
    assert message["finalSaved"] is False
    assert message["note"] == "the trainer exited without saving a final checkpoint"
    assert message["step"] == newest
