"""What the sidecar reads from the shared folder and its environment, when it is hostile."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from spotrun import layout, marker
from spotrun.env import Settings
from spotrun.localstore import LocalStore
from spotrun.sidecar import checkpoint_report

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("kind", ["fifo", "deep", "binary", "list", "link"])
def test_a_hostile_exit_note_is_no_note_and_never_hangs(tmp_path: Path, kind: str) -> None:
    note = tmp_path / marker.NAME
    if kind == "fifo":
        os.mkfifo(note)
    elif kind == "deep":
        note.write_text("[" * 200000)
    elif kind == "binary":
        note.write_bytes(b"\xff\xfe{")
    elif kind == "list":
        note.write_text("[1]")
    else:
        (tmp_path / "elsewhere.json").write_text('{"step": 5}')
        note.symlink_to(tmp_path / "elsewhere.json")
    result: list[object] = []
    reader = threading.Thread(target=lambda: result.append(marker.read(tmp_path)), daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert result == [None]


def test_a_good_exit_note_is_read(tmp_path: Path) -> None:
    marker.write(tmp_path, 12, "preemption")
    assert (marker.read(tmp_path) or {}).get("step") == 12


@pytest.mark.parametrize("grace", ["nan", "inf", "-5", "ten"])
def test_a_grace_period_that_is_no_number_of_seconds_is_refused_by_name(grace: str) -> None:
    with pytest.raises(ValueError, match="SPOTRUN_GRACE_SECONDS"):
        Settings.from_env({"SPOTRUN_GRACE_SECONDS": grace})


def test_unicode_digits_are_no_attempt_number() -> None:
    assert Settings.from_env({"SPOTRUN_ATTEMPT": "٣"}).attempt is None
    assert Settings.from_env({"SPOTRUN_ATTEMPT": "3"}).attempt == 3


@pytest.mark.parametrize(
    ("manifest", "step"),
    [
        ('{"step": 5, "epoch": 1, "metrics": {"loss": 1e400, "acc": 0.5}}', 5),
        ('{"step": 5, "epoch": true, "time": 7}', 5),  # bad optional fields dropped
        ('{"step": 1180591620717411303424}', None),  # 2**70
        ('{"step": true}', None),
        ('{"step": "5"}', None),
    ],
)
def test_status_values_from_a_manifest_are_checked(
    tmp_path: Path, manifest: str, step: int | None
) -> None:
    folder = tmp_path / layout.CHECKPOINTS / layout.step_dirname(5)
    folder.mkdir(parents=True)
    (folder / layout.MANIFEST).write_text(manifest)
    found = checkpoint_report(LocalStore(tmp_path), layout.step_dirname(5), "s3://b/p")
    assert (found.step if found else None) == step
    if found is not None:
        assert found.metrics in ({}, {"acc": 0.5})
