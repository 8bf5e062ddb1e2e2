"""The real ``spotrun sidecar`` against hanging, dribbling and dead storage, and hostile
HTTP clients (issue 10 items 7 and 8).

Storage faults come from a TCP proxy in front of the real S3 server: it hangs (accepts, reads,
never answers), dribbles (an HTTP answer one byte a second) or forwards, switchable while the
sidecar runs; a dead endpoint is a port nobody listens on, until the proxy binds it.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
import torch

from spotrun import Checkpointer, contract, layout, marker, mirror
from spotrun.localstore import LocalStore
from spotrun.s3store import S3Store
from tests.faultproxy import Proxy
from tests.integration.s3util import Sidecar, free_port, probe, run_env, wait_for

pytestmark = pytest.mark.integration
with_s3 = pytest.mark.usefixtures("s3_credentials")

SAVED = 40  # the step the job's status says was saved
GRACE = 10


def _save(directory: Path, step: int) -> None:
    """A committed checkpoint of step ``step`` in ``directory`` (a tiny model)."""
    torch.manual_seed(step)
    with Checkpointer(directory, model=torch.nn.Linear(8, 8), handle_signals=False) as ckpt:
        ckpt.global_step = step - 1
        ckpt.step()
        ckpt.save(wait=True)


def _status(sidecar: Sidecar) -> contract.SidecarReport | None:
    code, body = probe(sidecar.port, "/status")
    return contract.parse(body) if code == 200 else None


def _sidecar_env(s3, directory: Path, uri: str, endpoint: str, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = run_env(s3.env(), directory, uri, **extra)
    env.update(
        AWS_ENDPOINT_URL_S3=endpoint,
        SPOTRUN_S3_CALL_TIMEOUT="2",
        SPOTRUN_RESTORE_MAX_BACKOFF="1",
        SPOTRUN_RESTORE_TIMEOUT="2",  # must not apply: a step was saved
        SPOTRUN_GRACE_SECONDS=str(GRACE),
    )
    return env


def _seed_bucket(s3, bucket: str, prefix: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "earlier-attempt"
    _save(source, SAVED)
    remote = S3Store(bucket, prefix, endpoint=s3.endpoint_url)
    mirror.upload(LocalStore(source), layout.step_dirname(SAVED), remote)


@with_s3
@pytest.mark.parametrize("fault", ["hang", "dribble", "dead"])
def test_unreadable_storage_at_start_waits_and_then_restores_the_saved_step(  # type: ignore[no-untyped-def]
    s3, s3_bucket: str, tmp_path: Path, fault: str
) -> None:
    _seed_bucket(s3, s3_bucket, "jobs/a", tmp_path)
    port = free_port()
    proxy = None if fault == "dead" else Proxy(s3.endpoint_url, port, mode=fault)
    directory = tmp_path / "node"
    env = _sidecar_env(
        s3,
        directory,
        f"s3://{s3_bucket}/jobs/a",
        f"http://127.0.0.1:{port}",
        SPOTRUN_EXPECTED_STEP=str(SAVED),
    )
    sidecar = Sidecar(env, tmp_path)
    try:
        waiting = wait_for(
            lambda: (r := _status(sidecar)) and r.state == "waiting-for-storage" and r,
            timeout=60,
            what="/status to say waiting-for-storage",
        )
        assert waiting.problem and f"s3://{s3_bucket}/jobs/a" in waiting.problem
        # well past SPOTRUN_RESTORE_TIMEOUT: still waiting, the trainer still held back
        time.sleep(8)
        assert sidecar.proc.poll() is None
        assert probe(sidecar.port, "/startupz")[0] == 503
        assert probe(sidecar.port, "/healthz") == (200, "ok")
        assert not (directory / layout.CHECKPOINTS).exists() or not any(
            (directory / layout.CHECKPOINTS).iterdir()
        )
        retries = sidecar.output().count("the trainer waits")
        assert retries >= 2, sidecar.output()
        # the storage comes back
        if proxy is None:
            proxy = Proxy(s3.endpoint_url, port)
        else:
            proxy.switch("forward")
        wait_for(sidecar.started, timeout=60, what="the restore once the storage is back")
        restored = _status(sidecar)
        assert restored is not None and restored.step == SAVED and restored.state == "running"
        assert (LocalStore(directory).path(layout.step_dirname(SAVED)) / layout.MANIFEST).exists()
    finally:
        sidecar.kill()
        if proxy is not None:
            proxy.close()


@with_s3
def test_storage_that_answers_empty_starts_from_scratch_saying_so(  # type: ignore[no-untyped-def]
    s3, s3_bucket: str, tmp_path: Path
) -> None:
    env = _sidecar_env(
        s3,
        tmp_path / "node",
        f"s3://{s3_bucket}/jobs/empty",
        s3.endpoint_url,
        SPOTRUN_EXPECTED_STEP=str(SAVED),
    )
    sidecar = Sidecar(env, tmp_path)
    try:
        wait_for(sidecar.started, timeout=60, what="a fresh start on an empty prefix")
    finally:
        sidecar.kill()
    assert f"step {SAVED} was saved" in sidecar.output()
    assert "holds no valid checkpoint" in sidecar.output()


@with_s3
def test_start_without_storage_lets_the_trainer_start_when_the_user_says_so(  # type: ignore[no-untyped-def]
    s3, s3_bucket: str, tmp_path: Path
) -> None:
    env = _sidecar_env(
        s3,
        tmp_path / "node",
        f"s3://{s3_bucket}/jobs/a",
        f"http://127.0.0.1:{free_port()}",  # dead
        SPOTRUN_EXPECTED_STEP=str(SAVED),
        SPOTRUN_START_WITHOUT_STORAGE="1",
    )
    sidecar = Sidecar(env, tmp_path)
    try:
        wait_for(sidecar.started, timeout=60, what="startup despite the dead storage")
        assert probe(sidecar.port, "/readyz")[0] == 503
    finally:
        sidecar.kill()


@with_s3
@pytest.mark.parametrize("fault", ["hang", "dribble"])
def test_sigterm_against_hanging_storage_exits_within_the_grace_period(  # type: ignore[no-untyped-def]
    s3, s3_bucket: str, tmp_path: Path, fault: str
) -> None:
    proxy = Proxy(s3.endpoint_url)
    directory = tmp_path / "node"
    uri = f"s3://{s3_bucket}/jobs/grace"
    env = _sidecar_env(s3, directory, uri, proxy.url, SPOTRUN_S3_CALL_TIMEOUT="600")
    sidecar = Sidecar(env, tmp_path)
    try:
        wait_for(sidecar.started, timeout=60, what="the sidecar's startup probe")
        proxy.switch(fault)
        _save(directory, 7)  # the final checkpoint, which can no longer be uploaded
        marker.write(directory, 7, "preemption")
        wait_for(lambda: proxy.stuck > 0, timeout=30, what="an upload attempt")
        started = time.monotonic()
        sidecar.proc.send_signal(signal.SIGTERM)
        assert sidecar.proc.wait(timeout=120) == 0
        took = time.monotonic() - started
    finally:
        sidecar.kill()
        proxy.close()
    print(f"{fault}: the sidecar exited {took:.1f}s after SIGTERM ({GRACE}s grace)")
    assert took < GRACE + 5, f"the sidecar ran {took:.0f}s into a {GRACE}s grace period"
    message = contract.parse(sidecar.message.read_text())
    assert message is not None and message.finalSaved is False
    assert message.note and "grace deadline reached" in message.note
    assert message.state == "stopped"


def test_the_sidecar_process_keeps_its_threads_bounded_under_idle_connections(
    tmp_path: Path,
) -> None:
    root = tmp_path / "ckpt"
    _save(root, 3)
    env = dict(
        os.environ,
        SPOTRUN_SIDECAR_MODE="report",
        SPOTRUN_CHECKPOINT_DIR=str(root),
        SPOTRUN_GRACE_SECONDS="10",
    )
    sidecar = Sidecar(env, tmp_path)
    held: list[socket.socket] = []
    try:
        wait_for(sidecar.started, timeout=60, what="the report-mode sidecar")
        threads_before = len(os.listdir(f"/proc/{sidecar.proc.pid}/task"))
        for _ in range(600):
            held.append(socket.create_connection(("127.0.0.1", sidecar.port)))
        for sock in held[:100]:
            sock.send(b"GET /status HTTP/1.1\r\nX-Slow: ")  # slow-loris: never finished
        assert probe(sidecar.port, "/startupz") == (200, "restored")
        status = _status(sidecar)
        assert status is not None and status.step == 3
        threads = len(os.listdir(f"/proc/{sidecar.proc.pid}/task"))
        assert threads <= threads_before + 2, f"{threads} threads for 600 idle connections"
    finally:
        for sock in held:
            sock.close()
        sidecar.kill()
