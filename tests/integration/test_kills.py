"""Real processes killed at awkward instants; the checkpoints on disk must stay sound."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spotrun import layout, progress, reader
from spotrun.localstore import LocalStore

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
PYTHON = sys.executable


def _saving(directory: Path, pid: int | None = None) -> bool:
    """A temp folder exists (of writer ``pid``, when given: not one a killed writer left)."""
    mark = f".{pid}-" if pid else ""
    try:
        return any(
            n.startswith(layout.TMP_PREFIX) and mark in n
            for n in os.listdir(directory / "checkpoints")
        )
    except FileNotFoundError:
        return False


def _wait_for(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.0005)


def test_sigkill_during_saves_50_times_never_loses_more_than_the_save_in_flight(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "run"
    env = dict(os.environ, SPOTRUN_PROGRESS_FILE=str(tmp_path / "progress.jsonl"))
    zygote = subprocess.Popen(
        [PYTHON, str(HERE / "toy_trainer.py"), str(directory), "--mb", "8", "--zygote"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert zygote.stdin and zygote.stdout
    rng = random.Random(50)
    store = LocalStore(directory)
    newest = 0
    try:
        for kill in range(50):
            zygote.stdin.write("go\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline().split()[1])
            # let this trainer commit one checkpoint (so the run progresses), then strike
            # during one of the saves that follow, at a random instant
            _wait_for(lambda: max(layout.newest_first(store.names()), default=(0, ""))[0] > newest)  # noqa: B023
            time.sleep(rng.uniform(0.0, 0.2))
            _wait_for(lambda: _saving(directory, pid))  # noqa: B023 (used at once)
            os.kill(pid, signal.SIGKILL)
            status = int(zygote.stdout.readline().split()[2])
            assert os.WIFSIGNALED(status), f"kill {kill}: the trainer had already exited ({status})"

            events = [e for e in progress.read(env["SPOTRUN_PROGRESS_FILE"]) if e["pid"] == pid]
            saved = [e["step"] for e in events if e["event"] == "saved"]
            steps = [e["step"] for e in events if e["event"] == "step"]
            for _, name in layout.newest_first(store.names()):
                reader.load_verified(store, name)  # nothing partial was ever committed
            loaded = reader.newest_valid(store)
            if loaded is None:  # killed while the very first checkpoint was being written
                assert newest == 0 and not saved, f"kill {kill}: a committed checkpoint vanished"
                continue
            reader.decode_state(loaded)  # the newest complete checkpoint really loads
            # only the checkpoint being written may be lost
            assert loaded.step >= max(saved, default=newest) >= newest
            assert loaded.step <= max(steps, default=newest)
            newest = loaded.step
    finally:
        zygote.kill()
        zygote.wait()
    assert newest > 0


def test_sigterm_during_a_background_write_ends_with_the_final_checkpoint_newest(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "run"
    log = tmp_path / "progress.jsonl"
    proc = subprocess.Popen(
        [PYTHON, str(HERE / "toy_trainer.py"), str(directory), "--mb", "96", "--interval", "3"],
        env=dict(os.environ, SPOTRUN_PROGRESS_FILE=str(log)),
    )
    try:
        _wait_for(lambda: any(e["event"] == "saved" for e in progress.read(str(log))))
        _wait_for(lambda: _saving(directory))  # a periodic write is in flight now
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    steps = [e["step"] for e in progress.read(str(log)) if e["event"] == "step"]
    store = LocalStore(directory)
    loaded = reader.newest_valid(store)
    assert loaded is not None
    assert loaded.step == steps[-1] and loaded.manifest.reason == "preemption"
    assert not _saving(directory), "a temp folder was left behind"
    names = [n for _, n in layout.newest_first(store.names())]
    for name in names:
        reader.load_verified(store, name)
