"""The sidecar's /status (what the operator reads for live progress) and ``spotrun purge``
of a directory (what the cleanup pod runs on a PVC)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spotrun import layout
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
    assert answer(health, "/status") == (200, "{}")
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
    }


def test_report_of_a_missing_or_broken_manifest_is_none(tmp_path):
    local = LocalStore(tmp_path)
    assert checkpoint_report(local, layout.step_dirname(5), "x") is None
    folder = tmp_path / layout.CHECKPOINTS / layout.step_dirname(5)
    folder.mkdir(parents=True)
    (folder / layout.MANIFEST).write_text("{not json")
    assert checkpoint_report(local, layout.step_dirname(5), "x") is None


def test_purge_empties_a_directory_but_keeps_it(tmp_path):
    committed(tmp_path, 1, 0, 1.0)
    (tmp_path / "notes.txt").write_text("x")
    assert spotrun_main(["purge", str(tmp_path)]) == 0
    assert tmp_path.is_dir() and list(tmp_path.iterdir()) == []


def test_purge_refuses_a_whole_bucket_and_a_missing_directory(tmp_path):
    with pytest.raises(StoreError, match="whole bucket"):
        purge("s3://bucket")
    with pytest.raises(StoreError, match="no such directory"):
        purge(str(tmp_path / "absent"))
