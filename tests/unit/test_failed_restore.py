"""A restore that raises writes nothing: no "emergency" step-0 checkpoint over what it refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from spotrun import Checkpointer, CheckpointMismatchError, UnknownFormatError, layout
from tests.unit.conftest import Net, train_steps

pytestmark = pytest.mark.unit


def _checkpointer(ckdir: Path, width: int = 8) -> tuple[Checkpointer, Net, torch.optim.Optimizer]:
    model = Net(width)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    return Checkpointer(ckdir, model=model, optimizer=opt, handle_signals=False), model, opt


def _trained(ckdir: Path, steps: int) -> dict[str, bytes]:
    """A directory holding the final checkpoint of ``steps`` steps; returns its files' bytes."""
    ckpt, model, opt = _checkpointer(ckdir)
    train_steps(ckpt, model, opt, steps)
    ckpt.close()
    return _contents(ckdir)


def _contents(ckdir: Path) -> dict[str, bytes]:
    """Every file under checkpoints/ (temp folders included), by relative path."""
    root = ckdir / layout.CHECKPOINTS
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _bump_format_version(ckdir: Path, step: int) -> None:
    manifest = ckdir / layout.CHECKPOINTS / layout.step_dirname(step) / layout.MANIFEST
    raw = json.loads(manifest.read_text())
    raw["format_version"] = 99
    manifest.write_text(json.dumps(raw))


def test_an_unknown_format_escaping_restore_in_the_with_block_writes_no_checkpoint(
    ckdir: Path, spotrun_log: pytest.LogCaptureFixture
) -> None:
    _trained(ckdir, 3)
    _bump_format_version(ckdir, 3)
    before = _contents(ckdir)
    ckpt, _, _ = _checkpointer(ckdir)
    with pytest.raises(UnknownFormatError), ckpt:
        ckpt.restore()
    assert _contents(ckdir) == before  # no step-0 folder, nothing rewritten, no temp left
    assert "nothing is saved" in spotrun_log.text


def test_a_checkpoint_of_another_model_escaping_restore_writes_no_checkpoint(
    ckdir: Path, spotrun_log: pytest.LogCaptureFixture
) -> None:
    before = _trained(ckdir, 2)
    ckpt, _, _ = _checkpointer(ckdir, width=16)
    with pytest.raises(CheckpointMismatchError), ckpt:
        ckpt.restore()
    assert _contents(ckdir) == before
    assert "CheckpointMismatchError escaped before any training step" in spotrun_log.text


def test_a_caught_failed_restore_then_an_error_before_training_saves_nothing(
    ckdir: Path,
) -> None:
    before = _trained(ckdir, 2)
    ckpt, _, _ = _checkpointer(ckdir, width=16)
    with pytest.raises(RuntimeError, match="gave up"), ckpt:
        try:
            ckpt.restore()
        except CheckpointMismatchError:
            pass
        raise RuntimeError("gave up")
    assert _contents(ckdir) == before


def test_closing_after_a_caught_failed_restore_without_training_saves_nothing(
    ckdir: Path,
) -> None:
    _trained(ckdir, 2)
    _bump_format_version(ckdir, 2)
    before = _contents(ckdir)
    ckpt, _, _ = _checkpointer(ckdir)
    with ckpt:
        with pytest.raises(UnknownFormatError):
            ckpt.restore()
    assert _contents(ckdir) == before  # close() wrote no "final" step 0 either


def test_training_after_a_caught_failed_restore_is_saved_as_before(ckdir: Path) -> None:
    _trained(ckdir, 2)
    ckpt, model, opt = _checkpointer(ckdir, width=16)
    with pytest.raises(RuntimeError, match="boom"), ckpt:
        with pytest.raises(CheckpointMismatchError):
            ckpt.restore()
        train_steps(ckpt, model, opt, 3)  # the user chose to train from scratch
        raise RuntimeError("boom")
    manifest = ckdir / layout.CHECKPOINTS / layout.step_dirname(3) / layout.MANIFEST
    assert json.loads(manifest.read_text())["reason"] == "emergency"


def test_an_error_right_after_a_good_restore_leaves_the_restored_checkpoint_alone(
    ckdir: Path,
) -> None:
    before = _trained(ckdir, 4)
    ckpt, _, _ = _checkpointer(ckdir)
    with pytest.raises(RuntimeError, match="data loader died"), ckpt:
        assert ckpt.restore() == 4
        raise RuntimeError("data loader died")
    assert _contents(ckdir) == before  # not rewritten as an "emergency" copy of itself
    assert os.listdir(ckdir / layout.CHECKPOINTS) == [layout.step_dirname(4)]
