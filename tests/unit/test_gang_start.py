"""A process the operator made one rank of a gang, started without a process group, is refused
at once: alone it would train on its own and never write its part of the gang's checkpoints
(its pod's sidecar would wait for a PART that never comes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spotrun import Checkpointer
from spotrun.gangworld import GangEnvError

pytestmark = pytest.mark.unit

TORCHRUN = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK")


def _checkpointer(tmp_path: Path) -> Checkpointer:
    model = torch.nn.Linear(2, 1)
    return Checkpointer(str(tmp_path), model=model, handle_signals=False)


def test_plain_python_in_a_gang_pod_is_refused_naming_the_launcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in TORCHRUN:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPOTRUN_NNODES", "2")
    monkeypatch.setenv("SPOTRUN_NODE_RANK", "1")
    with pytest.raises(GangEnvError, match=r"SPOTRUN_NNODES=2 but torchrun runs .* 1 nodes"):
        _checkpointer(tmp_path)
    assert not list(tmp_path.iterdir())  # nothing written


def test_torchrun_without_init_process_group_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(GangEnvError, match="rank 1 of 2 .* call init_process_group before"):
        _checkpointer(tmp_path)


def test_a_single_process_outside_a_gang_still_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (*TORCHRUN, "SPOTRUN_NNODES", "SPOTRUN_NODE_RANK", "SPOTRUN_NPROC_PER_NODE"):
        monkeypatch.delenv(name, raising=False)
    assert _checkpointer(tmp_path).restore() == 0  # no checkpoint: starts at step 0
