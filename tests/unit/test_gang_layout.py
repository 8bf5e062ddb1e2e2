"""The gang checkpoint layout (issue 14): which files a checkpoint of W ranks holds, the PART
markers' names, and a manifest that names a world is checked against it."""

from __future__ import annotations

import json

import pytest

from spotrun import layout, manifest

pytestmark = pytest.mark.unit


def test_a_single_rank_checkpoint_keeps_todays_files() -> None:
    assert layout.expected_paths(1) == ["tensors.safetensors", "state.json"]


def test_a_gang_checkpoint_holds_every_ranks_folder() -> None:
    paths = layout.expected_paths(2)
    assert paths == [
        "tensors.safetensors",
        "state.json",
        "rank-00000/tensors.safetensors",
        "rank-00000/state.json",
        "rank-00001/tensors.safetensors",
        "rank-00001/state.json",
    ]
    assert layout.payload_problem(paths, 2) is None
    missing = layout.payload_problem(paths[:-1], 2)
    assert missing is not None and "rank-00001/state.json 0 times" in missing
    beyond = layout.payload_problem([*paths, "rank-00002/state.json"], 2)
    assert beyond is not None and "rank-00002/state.json" in beyond


@pytest.mark.parametrize("name", ["PART-node-1.json", "PART-node-00001.json.tmp", "rank-1"])
def test_names_outside_the_format_are_not_parts(name: str) -> None:
    assert layout.parse_part_name(name) is None


def test_part_and_rank_names_round_trip() -> None:
    assert layout.parse_part_name(layout.part_name(7)) == 7
    assert layout.parse_rank_dirname(layout.rank_dirname(12)) == 12
    assert layout.node_of_rank(3, 2) == 1
    with pytest.raises(ValueError, match="rank"):
        layout.rank_dirname(layout.MAX_WORLD)


def _manifest(world: dict[str, object] | None, paths: list[str]) -> bytes:
    files = [{"path": p, "size": 1, "crc32c": "00000000"} for p in paths]
    raw = {
        "format_version": layout.FORMAT_VERSION,
        "step": 10,
        "epoch": 0,
        "time": "2026-12-01T00:00:00+00:00",
        "files": files,
        "world": world,
    }
    return json.dumps(raw).encode()


def test_a_gang_manifest_must_name_every_ranks_files() -> None:
    world = {"nnodes": 2, "procs_per_node": 2, "world_size": 4, "mode": "replicated"}
    good = manifest.parse(_manifest(world, layout.expected_paths(4)), "step-10")
    assert good.world_size == 4
    with pytest.raises(manifest.ManifestError, match="rank-00003/state.json 0 times"):
        manifest.parse(_manifest(world, layout.expected_paths(4)[:-1]), "step-10")


def test_a_world_whose_size_does_not_add_up_is_refused() -> None:
    world = {"nnodes": 2, "procs_per_node": 2, "world_size": 3, "mode": "sharded"}
    with pytest.raises(manifest.ManifestError, match="world_size 3 is not nnodes 2 x"):
        manifest.parse(_manifest(world, layout.expected_paths(3)), "step-10")
