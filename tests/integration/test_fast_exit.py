"""After the SIGTERM save the trainer ends without the interpreter's teardown (fastexit.py):
a script whose teardown would never end still exits 0 once its save is durable, after its
own ``finally`` block ran, and the checkpoint restores the step it was at."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from spotrun import layout
from spotrun.localstore import LocalStore

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).with_name("slow_teardown_trainer.py")
WAIT = 300.0  # a bound for a hang, not a timing: without the fast exit it never ends


def test_the_sigterm_save_ends_the_process_without_its_endless_teardown(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTRUN_")}
    env["SPOTRUN_SAVE_AT_ONCE"] = "1"
    marker = tmp_path / "finally.txt"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(tmp_path / "ckpt"), str(marker)],
        env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "training", proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the trainer hung in its teardown after the SIGTERM save") from None
    assert proc.returncode == 0, err
    assert "is durable; exiting 0" in err
    saved = marker.read_text()
    assert saved.startswith("finally ran at step ")
    step = int(saved.split()[-1])
    names = LocalStore(tmp_path / "ckpt").names()
    assert layout.step_dirname(step) in names, (step, names)
