"""The sidecar's /status (what the operator reads for live progress) and ``spotrun purge``
of a directory (what the cleanup pod runs on a PVC)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from spotrun import layout, marker
from spotrun.cli import main as spotrun_main
from spotrun.localstore import LocalStore
from spotrun.probes import Health, answer
from spotrun.purge import purge
from spotrun.sidecar import Reporter, checkpoint_report
from spotrun.store import StoreError

pytestmark = pytest.mark.unit


def committed(root: Path, step: int, epoch: int, loss: float) -> None:
    folder = root / layout.CHECKPOINTS / layout.step_dirname(step)
    folder.mkdir(parents=True)
    manifest = {
        "format_version": 1,
        "step": step,
        "epoch": epoch,
        "files": [],
        "time": "2026-01-01T12:00:00+00:00",
        "metrics": {"loss": loss},
    }
    (folder / layout.MANIFEST).write_text(json.dumps(manifest))


def test_status_is_empty_json_until_a_checkpoint_is_durable(tmp_path):
    health = Health(started=True)
    assert answer(health, "/status") == (200, '{"metrics":{},"state":"running"}')
    committed(tmp_path, 450, 3, 0.25)
    local = LocalStore(tmp_path)
    reporter = Reporter(health, local, lambda name: f"s3://b/p/checkpoints/{name}")
    reporter.update(450)
    code, body = answer(health, "/status")
    assert code == 200
    assert json.loads(body) == {
        "step": 450,
        "epoch": 3,
        "time": "2026-01-01T12:00:00+00:00",
        "uri": "s3://b/p/checkpoints/step-000000000450",
        "metrics": {"loss": 0.25},
        "state": "running",
    }


def test_report_of_a_missing_or_broken_manifest_is_none(tmp_path):
    local = LocalStore(tmp_path)
    assert checkpoint_report(local, layout.step_dirname(5), "x") is None
    folder = tmp_path / layout.CHECKPOINTS / layout.step_dirname(5)
    folder.mkdir(parents=True)
    (folder / layout.MANIFEST).write_text("{not json")
    assert checkpoint_report(local, layout.step_dirname(5), "x") is None


def test_purge_empties_the_checkpoints_of_a_directory_but_keeps_it(tmp_path):
    committed(tmp_path, 1, 0, 1.0)
    (tmp_path / "notes.txt").write_text("x")
    assert spotrun_main(["purge", str(tmp_path)]) == 0
    assert tmp_path.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == [
        layout.CHECKPOINTS,
        "notes.txt",
    ]
    assert list((tmp_path / layout.CHECKPOINTS).iterdir()) == []


def test_purge_refuses_a_whole_bucket_and_a_missing_directory(tmp_path):
    with pytest.raises(StoreError, match="whole bucket"):
        purge("s3://bucket")
    with pytest.raises(StoreError, match="no such directory"):
        purge(str(tmp_path / "absent"))


@pytest.mark.integration
def test_report_mode_sidecar_serves_the_newest_checkpoint_of_a_directory(tmp_path):
    """``SPOTRUN_SIDECAR_MODE=report`` (a shared volume, nothing to sync): /status follows
    the directory; on SIGTERM the termination message names the newest step."""
    from tests.e2e.e2e_support import wait_for
    from tests.integration.s3util import SPOTRUN, free_port, probe

    root, message = tmp_path / "ckpt", tmp_path / "termination"
    committed(root, 10, 0, 0.5)
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "SPOTRUN_SIDECAR_MODE": "report",
        "SPOTRUN_CHECKPOINT_DIR": str(root),
        "SPOTRUN_SIDECAR_PORT": str(port),
        "SPOTRUN_SYNC_POLL_SECONDS": "0.1",
        "SPOTRUN_TERMINATION_MESSAGE_PATH": str(message),
    }
    proc = subprocess.Popen([SPOTRUN, "sidecar"], env=env)
    try:

        def status() -> dict[str, object]:
            try:
                code, body = probe(port, "/status")
            except OSError:
                return {}
            return dict(json.loads(body)) if code == 200 else {}

        wait_for(lambda: status().get("step") == 10, "/status to report step 10")
        committed(root, 20, 1, 0.25)
        wait_for(lambda: status().get("step") == 20, "/status to report step 20")
        assert status()["epoch"] == 1 and status()["metrics"] == {"loss": 0.25}
        marker.write(root, 20, "preemption")
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    summary = json.loads(message.read_text())
    assert (summary["step"], summary["epoch"], summary["finalSaved"]) == (20, 1, True)
    assert summary["uri"].endswith("checkpoints/step-000000000020")
