"""The pure rules of a gang restore: which files a rank may open, which world sizes a
checkpoint restores at, what a rank's part must hold, and the RNG of a rank that is new."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path

import pytest
import torch

from spotrun import components, gangread, gangworld, layout, manifest, rng
from spotrun.localstore import LocalStore
from spotrun.store import UnsafeFileError

pytestmark = pytest.mark.unit


def _record(mode: str, nnodes: int, per_node: int) -> manifest.Manifest:
    world = manifest.World(
        nnodes=nnodes, procs_per_node=per_node, world_size=nnodes * per_node, mode=mode
    )
    return manifest.Manifest(
        format_version=layout.FORMAT_VERSION,
        step=7,
        epoch=0,
        time=datetime.now(timezone.utc),
        files=[],
        world=world,
    )


def _world(size: int) -> gangworld.World:
    return gangworld.World(0, size, 0, size, 0, 1)


def test_a_sharded_checkpoint_restores_only_at_its_world_size() -> None:
    gangread.check_world(_record("sharded", 2, 2), _world(4), "ck")
    with pytest.raises(components.CheckpointMismatchError, match="sharded over 4 ranks.*has 2"):
        gangread.check_world(_record("sharded", 2, 2), _world(2), "ck")
    with pytest.raises(components.CheckpointMismatchError, match="this run has 1 ranks"):
        gangread.check_world(_record("sharded", 2, 2), gangworld.SINGLE, "ck")


def test_a_replicated_checkpoint_restores_at_any_world_size() -> None:
    for size in (1, 2, 8):
        gangread.check_world(_record("replicated", 2, 2), _world(size), "ck")


def test_a_ranks_part_must_record_its_step_and_valid_rng() -> None:
    part = {"rng": rng.capture(), "shards": {}, "progress": {"step": 7}}
    assert gangread.check_rank_state(part, 7) is part
    with pytest.raises(components.StateError, match="does not record step 8"):
        gangread.check_rank_state(part, 8)
    with pytest.raises(rng.RngStateError):
        gangread.check_rank_state({**part, "rng": {"python": 1}}, 7)
    with pytest.raises(components.StateError, match="'shards' entry is not a mapping"):
        gangread.check_rank_state({**part, "shards": [1]}, 7)


def test_a_new_rank_gets_streams_of_its_own_the_same_every_time() -> None:
    saved = rng.capture()

    def draws(rank: int) -> tuple[float, float]:
        rng.derive(saved, rank)
        return random.random(), float(torch.rand(1))

    try:
        assert draws(3) == draws(3)
        assert draws(3) != draws(4)
    finally:
        rng.restore(saved)  # the other tests' streams stay as they were


def test_a_rank_folder_is_read_and_anything_else_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    folder = store.dir / "step-000000000007"
    (folder / "rank-00001").mkdir(parents=True)
    (folder / "rank-00001" / "state.json").write_bytes(b"{}")
    assert bytes(store.read(folder.name, "rank-00001/state.json")) == b"{}"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "state.json").write_bytes(b"secret")
    (folder / "rank-00002").symlink_to(tmp_path / "elsewhere")
    for path in ("rank-00002/state.json", "other/state.json", "rank-00001/../state.json"):
        with pytest.raises(UnsafeFileError):
            store.read(folder.name, path)
