"""A real full filesystem under a real trainer process: training goes on and the run exits 0.

The checkpoint directory is a small tmpfs (``mount -t tmpfs -o size=...``) sized from the real
size of one checkpoint of the toy model, so ENOSPC comes from the kernel, not from a mock.
Mounting needs root: the suite runs as root here and in CI (same machine); elsewhere these
tests are skipped, saying so. Every mount is unmounted in the fixture's teardown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from spotrun import layout, marker, reader
from spotrun.localstore import LocalStore
from tests.integration import toy_trainer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)"),
]

HERE = Path(__file__).parent
PAGE = 4096
MB = 1  # toy model of about 1 MiB of parameters and Adam moments

Mount = Callable[[int], Path]


@pytest.fixture
def tmpfs() -> Iterator[Mount]:
    """``tmpfs(size)`` mounts a tmpfs of ``size`` bytes and returns its path."""
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        point = Path(tempfile.mkdtemp(prefix="spotrun-full-"))
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point)],
            check=True,
            capture_output=True,
        )
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False)
        point.rmdir()


def _used(path: Path) -> int:
    fs = os.statvfs(path)
    return (fs.f_blocks - fs.f_bfree) * fs.f_frsize


@pytest.fixture
def checkpoint_bytes(tmpfs: Mount) -> int:
    """What one checkpoint of the toy model (and its exit note) takes on a tmpfs."""
    roomy = tmpfs(64 * 2**20)
    toy_trainer.train(str(roomy), mb=MB, interval=1, steps=1, keep=1)
    return _used(roomy)


def _sized_for(checkpoints: int, one: int) -> int:
    """Room for ``checkpoints`` checkpoints and half of one more, whole pages."""
    return -(-(checkpoints * one + one // 2) // PAGE) * PAGE


def _train(directory: Path, *, steps: int, keep: int) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(HERE / "toy_trainer.py"), str(directory), "--mb", str(MB)]
    command += ["--interval", "2", "--steps", str(steps), "--keep", str(keep)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def _leftovers(directory: Path) -> list[str]:
    return [n for n in os.listdir(directory / "checkpoints") if n.startswith(layout.TMP_PREFIX)]


def _steps(directory: Path) -> list[int]:
    store = LocalStore(directory)
    steps = sorted(step for step, _ in layout.newest_first(store.names()))
    for step in steps:
        reader.load_verified(store, layout.step_dirname(step))  # each one whole
    return steps


def test_room_for_exactly_keep_checkpoints_retention_makes_room_and_training_goes_on(
    tmpfs: Mount, checkpoint_bytes: int
) -> None:
    keep = 3
    directory = tmpfs(_sized_for(keep, checkpoint_bytes))
    run = _train(directory, steps=15, keep=keep)  # saves at 2, 4, ... 14 and a final 15
    assert run.returncode == 0, run.stderr
    assert "No space left on device while saving step 8" in run.stderr
    assert "deleted step 2 early" in run.stderr
    assert "failed" not in run.stderr  # every save landed, the later ones without a retry
    assert _steps(directory) == [12, 14, 15]
    assert _leftovers(directory) == []
    note = marker.read(directory)
    assert note is not None and note["step"] == 15


def test_not_even_one_checkpoint_fits_the_run_still_exits_0_and_says_why(
    tmpfs: Mount, checkpoint_bytes: int
) -> None:
    directory = tmpfs(checkpoint_bytes // 2)
    run = _train(directory, steps=5, keep=3)
    assert run.returncode == 0, run.stderr
    assert "saving step 2" in run.stderr  # the periodic failures are reported as they happen
    assert (
        "the final checkpoint of step 5 could NOT be written" in run.stderr
        and "No space left on device" in run.stderr
        and "no checkpoint is durable" in run.stderr
    ), run.stderr
    assert _steps(directory) == []
    assert _leftovers(directory) == []  # the partial copies were removed
    note = marker.read(directory)
    assert note is not None and note["step"] is None


def test_keep_1_on_a_disk_for_one_the_newest_is_kept_and_named_as_what_a_restart_gets(
    tmpfs: Mount, checkpoint_bytes: int
) -> None:
    directory = tmpfs(_sized_for(1, checkpoint_bytes))
    run = _train(directory, steps=5, keep=1)
    assert run.returncode == 0, run.stderr
    assert "nothing there may be deleted (keep=1" in run.stderr
    assert "the newest durable checkpoint is step 2" in run.stderr, run.stderr
    assert _steps(directory) == [2]
    assert _leftovers(directory) == []
    note = marker.read(directory)
    assert note is not None and note["step"] == 2


def test_sigterm_when_the_preemption_save_cannot_fit_exits_0_and_says_why(
    tmpfs: Mount, checkpoint_bytes: int
) -> None:
    directory = tmpfs(checkpoint_bytes // 2)
    command = [sys.executable, str(HERE / "toy_trainer.py"), str(directory), "--mb", str(MB)]
    trainer = subprocess.Popen([*command, "--interval", "1000"], stderr=subprocess.PIPE, text=True)
    assert trainer.stderr is not None
    try:
        for line in trainer.stderr:  # wait until it trains: the first save failed
            if "saving step 1000" in line and "No space left on device" in line:
                break
        trainer.send_signal(signal.SIGTERM)
        rest = trainer.stderr.read()
        assert trainer.wait(timeout=60) == 0, rest
    finally:
        trainer.kill()
        trainer.wait()
    assert "SIGTERM received" in rest
    assert "preemption checkpoint of step" in rest and "could NOT be written" in rest, rest
    assert "no checkpoint is durable" in rest
    assert _leftovers(directory) == []
    note = marker.read(directory)
    assert note is not None and note["step"] is None
