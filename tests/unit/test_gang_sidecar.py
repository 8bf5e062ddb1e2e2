"""The pure decisions of a gang pod's sidecar (issue 14, ``gangparts``): which PARTs it trusts,
which local checkpoints it uploads a part of, when node 0 may commit, what it cleans up."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from spotrun import gangparts, layout, sidecar
from spotrun.gangparts import Folder, Role
from spotrun.manifest import FileEntry, Manifest, Part, World
from spotrun.podenv import PodEnv

pytestmark = pytest.mark.unit

STEP = 300


def _entry(path: str) -> FileEntry:
    return FileEntry(path=path, size=len(path), crc32c=f"{len(path):08x}")


def _part(node: int, nnodes: int = 2, ppn: int = 2, step: int = STEP) -> Part:
    files = [_entry(p) for p in gangparts.node_paths(node, ppn)]
    return Part(format_version=1, step=step, node_rank=node, nnodes=nnodes, files=files)


def _manifest(nnodes: int = 2, ppn: int = 2) -> Manifest:
    world = World(nnodes=nnodes, procs_per_node=ppn, world_size=nnodes * ppn, mode="sharded")
    files = [_entry(p) for p in layout.expected_paths(nnodes * ppn)]
    now = datetime.now(timezone.utc)
    return Manifest(format_version=1, step=STEP, epoch=0, time=now, files=files, world=world)


def _listed(manifest: Manifest) -> dict[str, int]:
    return {f.path: f.size for f in manifest.files}


def test_each_node_writes_its_own_ranks_and_node_0_the_top_level() -> None:
    assert gangparts.node_paths(1, 2) == [
        "rank-00002/tensors.safetensors",
        "rank-00002/state.json",
        "rank-00003/tensors.safetensors",
        "rank-00003/state.json",
    ]
    both = gangparts.node_paths(0, 2) + gangparts.node_paths(1, 2)
    assert sorted(both) == sorted(layout.expected_paths(4))


def test_a_single_pod_job_keeps_todays_sidecar() -> None:
    assert Role.from_env(PodEnv.from_env({})) is None
    assert Role.from_env(PodEnv.from_env({"SPOTRUN_NNODES": "1"})) is None
    gang = {"SPOTRUN_NNODES": "2", "SPOTRUN_NODE_RANK": "1", "SPOTRUN_NPROC_PER_NODE": "2"}
    assert Role.from_env(PodEnv.from_env(gang)) == Role(1, 2, 2)


def test_node_k_uploads_the_folders_holding_its_part_newest_first() -> None:
    folders = [
        Folder(100, part=False, manifest=True),  # restored: in S3 already
        Folder(200, part=True, manifest=False),
        Folder(300, part=True, manifest=True),  # node 0 after rank 0's manifest
        Folder(400, part=False, manifest=False),  # being written
    ]
    assert gangparts.committed_for_node(folders) == [300, 200]


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        (_part(1, step=200), "it is step 200's, found in step 300's folder"),
        (_part(0), "it says node 0, its file name says node 1"),
        (_part(1, nnodes=3), "a gang of 3 node(s), this gang has 2"),
        (_part(1, ppn=1), "not exactly the files of node 1 (2 rank(s) per node"),
    ],
)
def test_a_part_of_another_step_node_gang_or_ranks_is_refused(part: Part, expected: str) -> None:
    problem = gangparts.part_problem(part, STEP, 1, 2, 2)
    assert problem is not None and expected in problem


def test_a_part_naming_a_file_outside_its_ranks_is_refused() -> None:
    stolen = _part(1).model_copy(update={"files": [*_part(1).files, _entry(layout.TENSORS)]})
    problem = gangparts.part_problem(stolen, STEP, 1, 2, 2)
    assert problem is not None and "tensors.safetensors" in problem
    outside = _part(1).model_copy(update={"files": [_entry("../../etc/passwd")]})
    assert gangparts.part_problem(outside, STEP, 1, 2, None) is not None


def test_node_out_of_range_is_refused() -> None:
    part = _part(2, nnodes=2)
    problem = gangparts.part_problem(part, STEP, 2, 2, 2)
    assert problem is not None and "out of range" in problem


def test_without_procs_per_node_a_part_must_hold_whole_contiguous_ranks() -> None:
    assert gangparts.part_problem(_part(1, ppn=3), STEP, 1, 2, None) is None
    gap = _part(1).model_copy(
        update={
            "files": [_entry(p) for p in gangparts.node_paths(1, 1) + gangparts.node_paths(3, 1)]
        }
    )
    assert gangparts.part_problem(gap, STEP, 1, 2, None) is not None
    half = _part(1).model_copy(update={"files": _part(1).files[:-1]})
    assert gangparts.part_problem(half, STEP, 1, 2, None) is not None


def test_a_part_with_a_lying_type_is_refused_with_its_name() -> None:
    blob = _part(1).to_json().replace(b'"step": 300', b'"step": "300"')
    with pytest.raises(gangparts.PartError, match="s3://b/x/PART-node-00001.json: not a valid"):
        gangparts.parse_part(blob, "s3://b/x/PART-node-00001.json")
    with pytest.raises(gangparts.PartError, match="not a valid PART"):
        gangparts.parse_part(b"[1, 2", "here")


def test_node_0_commits_only_once_every_part_and_file_is_in_s3() -> None:
    manifest = _manifest()
    parts = {0: _part(0), 1: _part(1)}
    assert gangparts.commit_wait(manifest, parts, _listed(manifest)) is None
    waiting = gangparts.commit_wait(manifest, {0: _part(0)}, _listed(manifest))
    assert waiting == "the part(s) of node(s) 1 of 2 are not in S3"
    short = {**_listed(manifest), "rank-00003/state.json": 1}
    waiting = gangparts.commit_wait(manifest, parts, short)
    assert waiting is not None and "rank-00003/state.json in S3 is 1 bytes" in waiting
    gone = {k: v for k, v in _listed(manifest).items() if k != "rank-00002/state.json"}
    waiting = gangparts.commit_wait(manifest, parts, gone)
    assert waiting is not None and "rank-00002/state.json in S3 is missing" in waiting


def test_node_0_waits_on_a_part_that_disagrees_with_the_manifest() -> None:
    """Another attempt's PART left at the same step, sizes that lie: never committed."""
    manifest = _manifest()
    lying = _part(1)
    lying.files[0] = FileEntry(path=lying.files[0].path, size=1, crc32c="0000abcd")
    waiting = gangparts.commit_wait(manifest, {0: _part(0), 1: lying}, _listed(manifest))
    assert waiting is not None and "node 1's PART says rank-00002/tensors.safetensors" in waiting
    other_step = gangparts.commit_wait(
        manifest, {0: _part(0), 1: _part(1, step=200)}, _listed(manifest)
    )
    assert other_step is not None and "node 1's PART in S3 is not usable" in other_step


def test_node_0_never_commits_a_manifest_of_another_gang() -> None:
    role = Role(0, 2, 2)
    assert gangparts.manifest_problem(_manifest(), role) is None
    three = gangparts.manifest_problem(_manifest(nnodes=3), role)
    assert three is not None and "gang of 3" in three
    wide = gangparts.manifest_problem(_manifest(ppn=4), role)
    assert wide is not None and "SPOTRUN_NPROC_PER_NODE says 2" in wide
    single = _manifest().model_copy(update={"world": None})
    assert gangparts.manifest_problem(single, role) is not None


def test_local_leftovers_are_old_folders_without_a_manifest() -> None:
    folders = [
        Folder(100, part=False, manifest=True),  # restored: the library's to prune
        Folder(150, part=False, manifest=False),  # a save that never finished
        Folder(200, part=True, manifest=False),
        Folder(300, part=True, manifest=False),
        Folder(400, part=False, manifest=False),  # being written now
    ]
    assert gangparts.local_leftovers(folders, keep=2) == [150]
    assert gangparts.local_leftovers(folders, keep=1) == [150, 200]
    assert gangparts.local_leftovers(folders, keep=5) == []


def test_remote_leftovers_are_never_committed_folders_older_than_what_is_kept() -> None:
    assert gangparts.remote_leftovers([100, 300], [50, 200, 400], keep=1) == [50, 200]
    assert gangparts.remote_leftovers([100, 300], [50, 200, 400], keep=2) == [50]
    assert gangparts.remote_leftovers([300], [50], keep=2) == []


def test_the_report_says_whether_the_part_is_up_and_node_0_committed(tmp_path: Path) -> None:
    from spotrun.gangsync import GangSyncer
    from spotrun.localstore import LocalStore

    class _Remote:
        uri = "s3://b/p"

    syncer = GangSyncer(LocalStore(tmp_path), _Remote(), Role(0, 2, 2))  # type: ignore[arg-type]
    syncer.part_step, syncer.pending = 300, "step 300 not committed: node 1's part"
    fields = sidecar.gang_fields(syncer)
    assert fields == {
        "nodeRank": 0,
        "nnodes": 2,
        "partStep": 300,
        "committed": False,
        "pending": "step 300 not committed: node 1's part",
    }
    syncer.durable_step = 300
    assert sidecar.gang_fields(syncer)["committed"] is True
    assert syncer.done_step == 300
    other = GangSyncer(LocalStore(tmp_path), _Remote(), Role(1, 2, 2))  # type: ignore[arg-type]
    other.part_step = 300
    assert sidecar.gang_fields(other) == {"nodeRank": 1, "nnodes": 2, "partStep": 300}
    assert other.done_step == 300 and other.durable_step is None


def test_purge_takes_a_never_committed_gang_folder_whole() -> None:
    """The parts and rank files a gang left without a manifest go with the job's purge."""
    from spotrun import purge

    leftovers = [
        f"checkpoints/{layout.step_dirname(STEP)}/{p}"
        for p in [*layout.expected_paths(4), layout.part_name(0), layout.part_name(1)]
    ]
    other = ["notes/readme.txt"]
    plan = purge.plan([*leftovers, *other], {}, "ns/job", "s3://b/p")
    assert plan.refusal is None and sorted(plan.delete) == sorted(leftovers)
