"""A gang save that fails on one rank fails on every rank, naming it, and commits nothing:
no rank waits for one that gave up, and no MANIFEST.json is written over a missing part.
(The gang's collectives are replaced by a stand-in that answers for the other rank.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from spotrun import gangsave, gangworld, layout
from spotrun.localstore import LocalStore
from spotrun.snapshot import SnapshotBuffer

pytestmark = pytest.mark.unit


class OtherRank:
    """``GangComm.all_gather_json`` of a 2-rank gang: this rank's value, then rank 1's."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.answers = answers

    def all_gather_json(self, value: Any) -> list[Any]:
        return [value, self.answers.pop(0)]


def _payload() -> gangsave.Payload:
    buffer = SnapshotBuffer()
    buffer.take({"x": torch.arange(4.0)})
    image, size = buffer.file_image()
    return gangsave.Payload(image, size, b'{"x": 1}')


RANK0 = gangworld.World(rank=0, world_size=2, local_rank=0, procs_per_node=1, node_rank=0, nnodes=2)
SAVE = gangsave.GangSave(step=5, epoch=0, metrics={}, reason="periodic", mode="replicated")


def _write(tmp_path: Path, answers: list[dict[str, Any]]) -> Path:
    comm: Any = OtherRank(answers)
    return gangsave.write(LocalStore(tmp_path), comm, RANK0, SAVE, _payload(), _payload())


def test_a_rank_that_cannot_write_fails_the_save_on_every_rank(tmp_path: Path) -> None:
    with pytest.raises(
        gangsave.GangSaveError,
        match=r"rank 1 \(node 1\) failed writing its files: OSError: \[Errno 28\]",
    ):
        _write(tmp_path, [{"error": "OSError: [Errno 28] No space left on device"}])
    folder = tmp_path / "checkpoints" / layout.step_dirname(5)
    assert not (folder / layout.MANIFEST).exists() and not (folder / layout.part_name(0)).exists()


def test_a_node_that_cannot_write_its_part_leaves_no_manifest(tmp_path: Path) -> None:
    rank1_files = [{"path": "rank-00001/state.json", "size": 1, "crc32c": "00000000"}]
    with pytest.raises(gangsave.GangSaveError, match="rank 1 .* failed writing its PART"):
        _write(tmp_path, [{"ok": rank1_files}, {"error": "PermissionError: read-only"}])
    folder = tmp_path / "checkpoints" / layout.step_dirname(5)
    assert (folder / layout.part_name(0)).exists() and not (folder / layout.MANIFEST).exists()


def test_when_every_rank_wrote_rank_0_commits_naming_every_ranks_files(tmp_path: Path) -> None:
    rank1_files = [
        {"path": f"rank-00001/{name}", "size": 1, "crc32c": "00000000"} for name in layout.PAYLOAD
    ]
    folder = _write(tmp_path, [{"ok": rank1_files}, {"ok": None}, {"ok": None}])
    manifest = (folder / layout.MANIFEST).read_text()
    assert all(path in manifest for path in layout.expected_paths(2))
    assert '"world_size": 2' in manifest
