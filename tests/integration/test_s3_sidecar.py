"""The sidecar and direct mode against the real S3 server (versitygw, from hack/)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from spotrun import layout, reader
from spotrun.localstore import LocalStore
from spotrun.s3store import S3Store
from tests.integration.s3util import Sidecar, run_env, toy, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("s3_credentials")]


def _store(s3, bucket: str, prefix: str) -> S3Store:  # type: ignore[no-untyped-def]
    return S3Store(bucket, prefix, endpoint=s3.endpoint_url)


def test_100mb_checkpoint_goes_up_through_the_sidecar_and_comes_back_identical(
    s3, s3_bucket: str, tmp_path: Path
) -> None:
    uri = f"s3://{s3_bucket}/jobs/big"
    first = tmp_path / "node-a"
    env = run_env(s3.env(), first, uri, SPOTRUN_UPLOAD="sidecar")
    sidecar = Sidecar(env, tmp_path, "a")
    try:
        wait_for(sidecar.started, what="the sidecar's startup probe")
        trainer = toy(first, env, "--mb", "100", "--steps", "2", "--interval", "100")
        assert trainer.wait(timeout=120) == 0
        remote = _store(s3, s3_bucket, "jobs/big")
        wait_for(lambda: remote.has_manifest(layout.step_dirname(2)), what="upload of step 2")
        assert sidecar.stop() == 0
    finally:
        sidecar.kill()
    message = json.loads(sidecar.message.read_text())
    assert message["step"] == 2 and message["finalSaved"] is True
    assert message["uri"] == f"{uri}/checkpoints/{layout.step_dirname(2)}"

    second = tmp_path / "node-b"  # a new node: empty disk
    restorer = Sidecar(run_env(s3.env(), second, uri), tmp_path, "b")
    try:
        wait_for(restorer.started, what="the restoring sidecar's startup probe")
        name = layout.step_dirname(2)
        for path in (layout.TENSORS, layout.STRUCTURE):
            original = (LocalStore(first).path(name) / path).read_bytes()
            assert (LocalStore(second).path(name) / path).read_bytes() == original
        assert len((LocalStore(second).path(name) / layout.TENSORS).read_bytes()) > 90 * 2**20
    finally:
        restorer.kill()


def test_sigterm_while_the_trainer_writes_its_final_checkpoint_still_lands_it(
    s3, s3_bucket: str, tmp_path: Path
) -> None:
    uri = f"s3://{s3_bucket}/jobs/final"
    directory = tmp_path / "node"
    env = run_env(
        s3.env(),
        directory,
        uri,
        SPOTRUN_UPLOAD="sidecar",
        SPOTRUN_PROGRESS_FILE=str(tmp_path / "progress.jsonl"),
        SPOTRUN_GRACE_SECONDS="60",  # the operator's default: a save of 120 MB on a busy node
    )
    sidecar = Sidecar(env, tmp_path)
    try:
        # waits on conditions, long enough for a busy machine (issue 11: two CPU hogs)
        wait_for(sidecar.started, timeout=600, what="the sidecar's startup probe")
        trainer = toy(directory, env, "--mb", "120", "--interval", "1000000")
        from spotrun import progress

        steps = tmp_path / "progress.jsonl"
        wait_for(lambda: len(progress.read(str(steps))) > 3, timeout=600, what="steps")
        trainer.send_signal(signal.SIGTERM)  # the trainer starts its final save ...
        sidecar.proc.send_signal(signal.SIGTERM)  # ... and the sidecar is told to stop now
        # the sidecar waits while the trainer holds its lock, up to the grace period
        assert trainer.wait(timeout=300) == 0
        assert sidecar.proc.wait(timeout=300) == 0
    finally:
        sidecar.kill()
    local = reader.newest_valid(LocalStore(directory))
    assert local is not None and local.manifest.reason == "preemption"
    message = json.loads(sidecar.message.read_text())
    assert message == {**message, "step": local.step, "finalSaved": True}
    remote = reader.load_verified(_store(s3, s3_bucket, "jobs/final"), local.name)
    assert remote.step == local.step


@pytest.mark.parametrize("fault", ["wrong-credentials", "missing-bucket", "unreachable"])
def test_bad_storage_gives_one_clear_line_and_training_goes_on(
    s3, s3_bucket: str, tmp_path: Path, fault: str
) -> None:
    s3_env = dict(s3.env())
    bucket = s3_bucket
    if fault == "wrong-credentials":
        s3_env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
        expected = "credentials rejected"
    elif fault == "missing-bucket":
        bucket = "no-such-bucket-spotrun"
        expected = "bucket does not exist"
    else:
        s3_env["AWS_ENDPOINT_URL_S3"] = "http://127.0.0.1:9"  # nothing listens on the discard port
        expected = "S3 endpoint unreachable"
    uri = f"s3://{bucket}/jobs/bad"

    # direct mode: the trainer saves locally, says why S3 failed, and exits 0
    direct = tmp_path / "direct"
    trainer = toy(
        direct,
        run_env(s3_env, direct, uri, SPOTRUN_FINAL_UPLOAD_TIMEOUT="3"),
        "--mb",
        "1",
        "--steps",
        "20",
        "--interval",
        "5",
    )
    _, err = trainer.communicate(timeout=120)
    log = err.decode()
    assert trainer.returncode == 0, log
    assert reader.newest_valid(LocalStore(direct)) is not None
    causes = [line for line in log.splitlines() if expected in line]
    assert causes and uri in causes[0], log
    assert len(causes) <= 2, "the same failure was logged over and over"
    assert "did NOT reach" in log

    # sidecar: starts the trainer anyway, reports degraded, keeps retrying
    directory = tmp_path / "sidecar"
    sidecar = Sidecar(run_env(s3_env, directory, uri, SPOTRUN_RESTORE_TIMEOUT="2"), tmp_path)
    try:
        wait_for(sidecar.started, timeout=300, what="startup despite the broken storage")
        from tests.integration.s3util import probe

        status, body = probe(sidecar.port, "/readyz")
        assert status == 503 and expected in body
        assert sidecar.proc.poll() is None
        assert expected in sidecar.output() and uri in sidecar.output()
        sidecar.stop()
    finally:
        sidecar.kill()
    message = json.loads(sidecar.message.read_text())
    assert message["finalSaved"] is False and expected in message["problem"]
