"""Warm start against the real S3 server: attempt 2's sidecar and trainer start while attempt
1 still trains and saves; attempt 2 restores only after attempt 1's final save (its ended
marker), so the step attempt 1 saved on SIGTERM is the one attempt 2 continues from."""

from __future__ import annotations

import json
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from spotrun import handoff, layout, progress
from spotrun.s3store import S3Store
from tests.integration.s3util import Sidecar, probe, run_env, toy, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("s3_credentials")]


def status_step(port: int) -> int:
    code, body = probe(port, "/status")
    step = json.loads(body).get("step") if code == 200 else None
    return step if isinstance(step, int) else -1


def restored(path: Path) -> list[int]:
    return [e["step"] for e in progress.read(str(path)) if e.get("event") == "restore"]


def test_the_next_attempt_restores_only_after_the_previous_attempts_final_save(
    s3, s3_bucket: str, tmp_path: Path
) -> None:
    uri = f"s3://{s3_bucket}/jobs/warm"
    old_dir, new_dir = tmp_path / "node-a", tmp_path / "node-b"
    old_env = run_env(
        s3.env(),
        old_dir,
        uri,
        SPOTRUN_UPLOAD="sidecar",
        SPOTRUN_ATTEMPT="1",
        SPOTRUN_JOB="warm",
        SPOTRUN_NAMESPACE="ns",
        SPOTRUN_GRACE_SECONDS="300",
        SPOTRUN_SAVE_AT_ONCE="1",
    )
    # as the operator sets it: the old pod's deletionTimestamp (SIGTERM + its grace) + skew
    until = datetime.now(timezone.utc) + timedelta(seconds=300 + handoff.SKEW_SECONDS)
    new_progress = tmp_path / "progress-b.jsonl"
    new_env = run_env(
        s3.env(),
        new_dir,
        uri,
        SPOTRUN_UPLOAD="sidecar",
        SPOTRUN_ATTEMPT="2",
        SPOTRUN_GRACE_SECONDS="300",  # both pods have the job's grace period
        SPOTRUN_PREVIOUS_ATTEMPT="1",
        SPOTRUN_PREVIOUS_UNTIL=until.isoformat().replace("+00:00", "Z"),
        SPOTRUN_PROGRESS_FILE=str(new_progress),
    )
    old_sidecar = Sidecar(old_env, tmp_path, "a")
    new_sidecar = None
    trainers = []
    try:
        wait_for(old_sidecar.started, timeout=600, what="attempt 1's sidecar")
        trainers.append(toy(old_dir, old_env, "--mb", "1", "--interval", "5"))
        wait_for(lambda: status_step(old_sidecar.port) >= 10, timeout=600, what="steps in S3")

        # attempt 2 starts beside attempt 1: its trainer imports torch and waits in restore()
        new_sidecar = Sidecar(new_env, tmp_path, "b")
        trainers.append(toy(new_dir, new_env, "--mb", "1", "--interval", "5"))
        wait_for(
            lambda: probe(new_sidecar.port, "/healthz")[0] == 200,
            timeout=600,
            what="attempt 2's sidecar to listen (its startupProbe)",
        )
        seen = status_step(old_sidecar.port)
        wait_for(
            lambda: status_step(old_sidecar.port) >= seen + 10,
            timeout=600,
            what="attempt 1 to save on while attempt 2 waits",
        )
        # attempt 1 has no marker yet and its deadline is far: attempt 2 has restored nothing
        assert probe(new_sidecar.port, "/startupz")[0] == 503
        assert restored(new_progress) == [] and new_sidecar.proc.poll() is None

        trainers[0].send_signal(signal.SIGTERM)  # the notice: attempt 1 saves and exits ...
        assert trainers[0].wait(timeout=300) == 0
        assert old_sidecar.stop(timeout=300) == 0  # ... and its sidecar flushes, then says so
        final = json.loads(old_sidecar.message.read_text())
        assert final["finalSaved"] is True

        wait_for(lambda: restored(new_progress), timeout=600, what="attempt 2's restore")
        assert restored(new_progress) == [final["step"]]  # 0 steps lost
        assert "attempt 1 ended (final save made it" in new_sidecar.output()
    finally:
        for proc in trainers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        old_sidecar.kill()
        if new_sidecar is not None:
            new_sidecar.kill()
    store = S3Store(s3_bucket, "jobs/warm", endpoint=s3.endpoint_url)
    marker = handoff.read(store, 1)
    assert marker is not None and (marker.step, marker.final_saved) == (final["step"], True)
    # the marker is invisible to everything that lists checkpoints
    assert all(layout.parse_step_dirname(n) is not None for n in store.names())
