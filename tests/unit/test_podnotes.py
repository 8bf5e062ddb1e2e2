"""The notes trainer and sidecar leave each other (``spotrun.podnotes``): what a note says is
read back, anything malformed reads as no note, and the sidecar's deadline is the trainer's
when the trainer's is earlier (one grace period for both)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from spotrun import podnotes
from spotrun.env import Settings
from spotrun.sidecar import SidecarConfig, grace_cap
from spotrun.signals import StopRequest

pytestmark = pytest.mark.unit


def test_notes_read_back_what_was_written(tmp_path: Path) -> None:
    podnotes.write_durable(tmp_path, 1200, 1000.5)
    podnotes.write_deadline(tmp_path, 2000.0, written=1990.0)
    assert podnotes.read_durable(tmp_path) == (1200, 1000.5)
    assert podnotes.read_deadline(tmp_path, not_before=1980.0) == 2000.0
    assert podnotes.read_deadline(tmp_path, not_before=1995.0) is None  # another run's note


@pytest.mark.parametrize(
    "content",
    [
        '{"step": true, "time": 1.0}',
        '{"step": -1, "time": 1.0}',
        '{"step": "12", "time": 1.0}',
        '{"step": 12, "time": NaN}',
        '{"step": 12, "time": "soon"}',
        '{"step": 12}',
        "[12, 1.0]",
        "not json",
        '{"step": 12, "time": 1.0, "pad": "' + "x" * 5000 + '"}',
    ],
)
def test_a_malformed_durable_note_reads_as_none(tmp_path: Path, content: str) -> None:
    (tmp_path / podnotes.DURABLE).write_text(content)
    assert podnotes.read_durable(tmp_path) is None


def test_a_note_that_is_not_a_regular_file_reads_as_none_without_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / podnotes.DEADLINE)  # opening a FIFO to read would block
    assert podnotes.read_deadline(tmp_path, not_before=0.0) is None
    target = tmp_path / "elsewhere.json"
    target.write_text('{"step": 5, "time": 1.0}')
    (tmp_path / podnotes.DURABLE).symlink_to(target)
    assert podnotes.read_durable(tmp_path) is None


def test_a_failed_write_of_the_durable_note_is_tried_again(tmp_path: Path) -> None:
    missing = tmp_path / "not-there"
    assert podnotes.note_durable(missing, 5, 1.0, noted=None) is None
    missing.mkdir()
    assert podnotes.note_durable(missing, 5, 1.0, noted=None) == 5
    assert podnotes.note_durable(missing, 5, 2.0, noted=5) == 5  # unchanged: not rewritten
    assert podnotes.read_durable(missing) == (5, 1.0)


def _sidecar_cap(root: Path, grace: float) -> tuple[StopRequest, float | None]:
    settings = Settings.from_env({"SPOTRUN_CHECKPOINT_DIR": str(root)})
    settings = Settings(**{**settings.__dict__, "grace_seconds": grace})
    stop = StopRequest()
    stop.first_at = time.monotonic()  # the sidecar's own SIGTERM, now
    return stop, grace_cap(stop, settings, SidecarConfig(margin_seconds=2.0))


def test_the_sidecar_ends_the_grace_period_the_trainer_began(tmp_path: Path) -> None:
    """A native sidecar gets SIGTERM once the trainer has exited: 50 s into a 60 s grace
    period here. Its deadline is the trainer's, not 60 s from now."""
    now = time.time()
    podnotes.write_deadline(tmp_path, now + 10.0, written=now - 50.0)
    stop, cap = _sidecar_cap(tmp_path, 60.0)
    assert stop.first_at is not None and cap is not None
    assert cap - stop.first_at == pytest.approx(10.0 - 2.0, abs=0.5)


def test_the_sidecar_ignores_a_deadline_left_by_an_earlier_run(tmp_path: Path) -> None:
    now = time.time()
    podnotes.write_deadline(tmp_path, now - 500.0, written=now - 560.0)  # > a grace period ago
    stop, cap = _sidecar_cap(tmp_path, 60.0)
    assert stop.first_at is not None and cap is not None
    assert cap - stop.first_at == pytest.approx(60.0 - 2.0, abs=0.01)
    (tmp_path / podnotes.DEADLINE).write_text(json.dumps({"deadline": "soon", "written": now}))
    _, cap = _sidecar_cap(tmp_path, 60.0)
    assert cap is not None and cap - time.monotonic() > 50.0


def test_a_directory_in_place_of_a_note_reads_as_none(tmp_path: Path) -> None:
    (tmp_path / podnotes.DEADLINE).mkdir()  # opens read-only, but is no file to read
    (tmp_path / podnotes.DURABLE).mkdir()
    assert podnotes.read_deadline(tmp_path, not_before=0.0) is None
    assert podnotes.read_durable(tmp_path) is None
