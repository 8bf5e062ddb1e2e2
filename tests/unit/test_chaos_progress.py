"""How ``spotrun chaos`` follows a run: the progress log read as it grows, one process's events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spotrun.chaos import _Progress

pytestmark = pytest.mark.unit


def _line(event: str, step: int, pid: int, **fields: object) -> str:
    return json.dumps({"event": event, "step": step, "t": 1.0 + step, "pid": pid, **fields}) + "\n"


def test_the_log_is_followed_as_it_grows_for_one_process_only(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    watch = _Progress(path, pid=7)
    assert not watch.reached(1)  # no log yet

    with open(path, "a") as log:
        log.write(_line("restore", 40, 7) + _line("step", 41, 7, epoch=0) + _line("step", 99, 8))
        log.write(_line("step", 42, 7, epoch=1)[:20])  # half a line: being written
        log.flush()
        assert watch.reached(41) and not watch.reached(42)  # pid 8's step 99 is not ours
        log.write(_line("step", 42, 7, epoch=1)[20:])
        log.write('{"event": "step", "step": 43, "pi\n')  # a line cut by SIGKILL
        log.write(_line("step", 44, 7))
    assert watch.reached(44)
    watch.close()

    assert watch.restored_step() == 40
    assert watch.steps() == [(41, 0, 42.0), (42, 1, 43.0), (44, None, 45.0)]
