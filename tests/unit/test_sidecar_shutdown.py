"""After SIGTERM the sidecar waits for a trainer that is still saving, however slow, and stops
at once for one that is gone (issue 11: under load it gave up after 5 quiet seconds while the
trainer was still taking its final step, and the final checkpoint never reached S3)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from spotrun import liveness
from spotrun.sidecar import after_stop

pytestmark = pytest.mark.unit

HOLDER = """
import sys, time
from pathlib import Path
from spotrun import liveness
fd = liveness.hold(Path(sys.argv[1]))
print("held" if fd is not None else "not held", flush=True)
time.sleep(600)
"""


def test_a_trainer_that_is_alive_is_waited_for_however_quiet_its_folder() -> None:
    assert after_stop(None, trainer_alive=True, writing=False, synced=True, durable_step=4) == (
        "wait"
    )


def test_a_trainer_gone_without_a_note_ends_the_wait_once_s3_has_the_newest() -> None:
    assert after_stop(None, False, writing=False, synced=True, durable_step=4) == "gone"
    assert after_stop(None, False, writing=False, synced=False, durable_step=4) == "wait"
    # a temp folder a killed trainer left behind is not a save in progress
    assert after_stop(None, False, writing=True, synced=True, durable_step=4) == "gone"


def test_the_note_ends_the_wait_once_its_step_is_in_s3() -> None:
    note = {"step": 7, "reason": "closed"}
    assert after_stop(note, False, writing=False, synced=True, durable_step=7) == "saved"
    assert after_stop(note, False, writing=False, synced=False, durable_step=4) == "wait"
    assert after_stop(note, False, writing=False, synced=True, durable_step=None) == "wait"
    assert after_stop({"step": 0}, False, writing=False, synced=True, durable_step=0) == "saved"
    assert after_stop({"step": None}, False, writing=False, synced=True, durable_step=None) == (
        "saved"
    )  # the trainer had nothing to save
    assert after_stop(note, True, writing=True, synced=True, durable_step=7) == "wait"


def _holder(root: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_the_lock_is_seen_from_another_process_and_goes_with_its_holder(
    tmp_path: Path, how: signal.Signals
) -> None:
    assert not liveness.held(tmp_path)
    proc = _holder(tmp_path)
    try:
        assert liveness.held(tmp_path)
        assert liveness.held(tmp_path)  # looking does not take it away
        second = liveness.hold(tmp_path)  # a second rank of the same pod shares it
        assert second is not None
        liveness.release(second)
        assert liveness.held(tmp_path)
    finally:
        proc.send_signal(how)
        proc.wait()
    assert not liveness.held(tmp_path)


def test_anything_but_a_plain_file_at_the_lock_is_no_trainer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / liveness.NAME)
    assert not liveness.held(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / liveness.NAME).symlink_to(tmp_path / "elsewhere")
    assert not liveness.held(other)


def test_an_open_checkpointer_holds_the_lock_and_lets_go_after_its_exit_note(
    tmp_path: Path,
) -> None:
    import torch

    from spotrun import Checkpointer, marker

    with Checkpointer(tmp_path, model=torch.nn.Linear(2, 2), handle_signals=False) as ckpt:
        ckpt.restore()
        ckpt.step()
        assert liveness.held(tmp_path) and marker.read(tmp_path) is None
    assert not liveness.held(tmp_path)
    assert (marker.read(tmp_path) or {}).get("step") == 1
