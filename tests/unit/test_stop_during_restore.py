"""A stop signal while the trainer waits for its sidecar's restore ends the wait at once: the
pod is going away, there is nothing to restore into nor to save, and a trainer that waited on
would hold its sidecar (which gets SIGTERM only after the trainer exits) until the grace end."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from spotrun import Checkpointer, fastexit, readiness
from spotrun.podenv import PodEnv
from tests.unit.conftest import Net

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _keep_sigterm() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_the_wait_for_the_sidecar_ends_once_stopped(tmp_path: Path) -> None:
    asked = iter([False, False, True])
    waited = readiness.wait(
        tmp_path,
        PodEnv(upload="sidecar", ready_timeout=60.0),
        sleep=lambda s: None,
        stopped=lambda: next(asked),
    )
    assert waited is None and not (tmp_path / readiness.READY).exists()


def test_sigterm_before_the_sidecars_restore_exits_0_saving_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spotrun_log: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SPOTRUN_UPLOAD", "sidecar")
    armed: list[bool] = []
    monkeypatch.setattr(fastexit, "arm", lambda: armed.append(True))  # not pytest's own exit
    ckpt = Checkpointer(tmp_path / "ckpt", model=Net())
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(SystemExit) as ended:
            ckpt.restore()  # no .spotrun-ready ever comes
    finally:
        ckpt.close()
    assert ended.value.code == 0 and armed == [True]
    assert "stopped before the sidecar's restore was done" in spotrun_log.text
    assert not list((tmp_path / "ckpt").glob("checkpoints/step-*"))
