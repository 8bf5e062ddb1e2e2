"""spec.checkpoint.intervalSteps / intervalSeconds reach the trainer as SPOTRUN_INTERVAL_*:
they drive a Checkpointer whose script sets no interval; an interval the script sets wins."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spotrun import Checkpointer, layout
from spotrun.env import Settings

pytestmark = pytest.mark.unit


def _steps_saved(directory: Path, steps: int, **interval: int) -> list[int]:
    model = torch.nn.Linear(2, 2)
    with Checkpointer(directory, model=model, handle_signals=False, keep=100, **interval) as c:
        c.restore()
        for _ in range(steps):
            c.step()
            c.wait()
    names = [p.name for p in (directory / layout.CHECKPOINTS).iterdir()]
    return sorted(step for step, _ in layout.newest_first(names))  # the last is close()'s


def test_the_interval_from_the_environment_drives_a_script_that_sets_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPOTRUN_INTERVAL_STEPS", "3")
    assert _steps_saved(tmp_path, 10) == [3, 6, 9, 10]


def test_the_scripts_own_interval_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPOTRUN_INTERVAL_STEPS", "3")
    assert _steps_saved(tmp_path, 10, interval_steps=5) == [5, 10]


def test_interval_seconds_is_read_and_a_bad_value_is_refused_by_name() -> None:
    assert Settings.from_env({"SPOTRUN_INTERVAL_SECONDS": "60"}).interval_seconds == 60
    with pytest.raises(ValueError, match="SPOTRUN_INTERVAL_STEPS='0'"):
        Settings.from_env({"SPOTRUN_INTERVAL_STEPS": "0"})
