"""Direct mode's uploader survives what happens under it: a checkpoint that local retention
removes between the listing and the upload is skipped (a newer one follows), and a pass that
fails in any other way is tried again; the thread never dies, so ``flush()`` (the trainer's
close) never waits on a dead thread. Before, both ended in a trainer that never exited."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, cast

import pytest
import torch

from spotrun import Checkpointer, layout, mirror
from spotrun.direct import DirectUploader
from spotrun.localstore import LocalStore
from spotrun.s3store import S3Store
from spotrun.syncer import Syncer

pytestmark = pytest.mark.unit


def _saved(directory: Path, step: int) -> str:
    with Checkpointer(directory, model=torch.nn.Linear(2, 2), handle_signals=False) as ckpt:
        ckpt.global_step = step - 1
        ckpt.step()
        ckpt.save(wait=True)
    return layout.step_dirname(step)


class _EmptyBucket:
    """Holds nothing; anything past the question "have you got it?" is not for this test."""

    def has_manifest(self, name: str) -> bool:
        return False


def test_a_checkpoint_pruned_after_the_listing_is_skipped_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _saved(tmp_path, 5)
    local = LocalStore(tmp_path)
    listed = mirror.newest_committed(local)
    assert listed == (5, name)
    (local.dir / name / layout.MANIFEST).unlink()  # retention begins deleting it right now
    monkeypatch.setattr(mirror, "newest_committed", lambda store: listed)
    syncer = Syncer(local, cast(S3Store, _EmptyBucket()))
    assert syncer.sync_once() is False and syncer.durable_step is None


class _Failing:
    """A syncer whose passes raise: an error nobody foresaw."""

    durable_step = None

    def __init__(self) -> None:
        self.passes = 0
        self.tried = threading.Event()

    def sync_once(self) -> bool:
        self.passes += 1
        self.tried.set()
        raise RuntimeError("something unforeseen")


def test_a_failing_pass_leaves_the_uploader_alive_and_flush_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("spotrun.direct.RETRY_MIN", 0.01)
    failing = _Failing()
    uploader = DirectUploader(cast(Any, failing))
    try:
        uploader.notify()
        assert failing.tried.wait(timeout=30)
        assert uploader.flush(7, timeout=0.5) is False  # returns: no hang on a dead thread
        assert uploader._thread.is_alive() and failing.passes >= 2  # it kept trying
    finally:
        uploader.stop()
