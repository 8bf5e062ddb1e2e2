"""The sidecars of a two-node gang against the real S3 server (issue 14): each node uploads its
part, node 0 commits only once both parts are there, a missing part is never committed (restore
falls back), a fresh pod restores every rank's files, and SIGTERM bounds node 0's wait.

The nodes' checkpoint folders are built by hand per the contract (``layout``): small tensor
files of different bytes per rank (a sharded checkpoint), each node's PART last, node 0's
MANIFEST after its PART.
"""

from __future__ import annotations

import json
import logging
import signal
import struct
from datetime import datetime, timezone
from pathlib import Path

import pytest

from spotrun import checksum, gangparts, integrity, layout, marker
from spotrun.gangparts import Role
from spotrun.gangsync import GangSyncer
from spotrun.localstore import LocalStore
from spotrun.manifest import FileEntry, Manifest, Part, World
from spotrun.s3store import S3Store
from spotrun.syncer import Syncer
from tests.conftest import S3Endpoint
from tests.integration.s3util import Sidecar, run_env, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("s3_credentials")]

NNODES, PPN = 2, 2


def _tensors(seed: int, n: int = 64) -> bytes:
    """A valid safetensors file of one U8 tensor whose bytes depend on ``seed``."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + bytes((seed * 7 + i) % 256 for i in range(n))


def _payload(path: str, step: int) -> bytes:
    rank = gangparts.rank_of(path)
    seed = step + (1000 if rank is None else rank)  # a shard per rank: different bytes
    if path.endswith(layout.TENSORS):
        return _tensors(seed)
    return json.dumps({"rank": rank, "step": step}).encode()


def _entry(path: str, blob: bytes) -> FileEntry:
    return FileEntry(path=path, size=len(blob), crc32c=checksum.to_hex(checksum.of_bytes(blob)))


def save(roots: list[Path], step: int, nodes: range = range(NNODES)) -> dict[str, bytes]:
    """What the library writes for ``step`` on each node in ``nodes`` (the others' files are
    named by node 0's manifest all the same); returns every file's bytes by path."""
    blobs = {p: _payload(p, step) for p in layout.expected_paths(NNODES * PPN)}
    name = layout.step_dirname(step)
    for node in nodes:
        folder = LocalStore(roots[node]).path(name)
        paths = gangparts.node_paths(node, PPN)
        for path in paths:
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_bytes(blobs[path])
        files = [_entry(p, blobs[p]) for p in paths]
        part = Part(format_version=1, step=step, node_rank=node, nnodes=NNODES, files=files)
        (folder / layout.part_name(node)).write_bytes(part.to_json())
        if node == 0:
            world = World(
                nnodes=NNODES, procs_per_node=PPN, world_size=NNODES * PPN, mode="sharded"
            )
            manifest = Manifest(
                format_version=1,
                step=step,
                epoch=0,
                time=datetime.now(timezone.utc),
                files=[_entry(p, b) for p, b in blobs.items()],
                world=world,
            )
            (folder / layout.MANIFEST).write_bytes(manifest.to_json())
    return blobs


def _remote(s3: S3Endpoint, bucket: str) -> S3Store:
    return S3Store(bucket, "jobs/gang", endpoint=s3.endpoint_url)


def _syncers(s3: S3Endpoint, bucket: str, roots: list[Path]) -> list[GangSyncer]:
    return [
        GangSyncer(LocalStore(root), _remote(s3, bucket), Role(n, NNODES, PPN), keep=2)
        for n, root in enumerate(roots)
    ]


def _committed(remote: S3Store) -> list[int]:
    return [s for s, n in layout.newest_first(remote.names()) if remote.has_manifest(n)]


def _restore(remote: S3Store, root: Path) -> int | None:
    return Syncer(LocalStore(root), remote, check=integrity.load_framed).restore_newest()


def test_node_0_commits_once_both_parts_are_up_and_a_fresh_pod_gets_every_rank(
    s3: S3Endpoint, s3_bucket: str, tmp_path: Path
) -> None:
    roots = [tmp_path / "node-0", tmp_path / "node-1"]
    node0, node1 = _syncers(s3, s3_bucket, roots)
    blobs = save(roots, 100)
    remote = _remote(s3, s3_bucket)
    name = layout.step_dirname(100)

    assert node0.sync_once() is False  # its part is up, node 1's is not: nothing committed
    assert remote.has_manifest(name) is False
    assert node0.pending is not None and "node(s) 1 of 2" in node0.pending
    assert node1.sync_once() is True and node1.done_step == 100
    assert layout.part_name(1) in remote.listing(name) and not remote.has_manifest(name)
    wait_for(node0.sync_once, timeout=300, what="node 0's commit")  # after its backoff
    assert node0.durable_step == 100 and _committed(remote) == [100]
    assert node0.pending is None

    # a fresh pod (another world size, say) downloads every rank's files, byte for byte
    fresh = tmp_path / "fresh"
    assert _restore(remote, fresh) == 100
    folder = LocalStore(fresh).path(name)
    for path, blob in blobs.items():
        assert (folder / path).read_bytes() == blob, path
    assert (folder / layout.MANIFEST).exists()
    assert not (folder / layout.part_name(0)).exists()  # parts are not the checkpoint's


def test_a_part_that_never_arrives_is_never_committed_and_restore_falls_back(
    s3: S3Endpoint, s3_bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    roots = [tmp_path / "node-0", tmp_path / "node-1"]
    node0, node1 = _syncers(s3, s3_bucket, roots)
    remote = _remote(s3, s3_bucket)
    save(roots, 100)
    node1.sync_once()
    wait_for(node0.sync_once, timeout=300, what="step 100's commit")

    save(roots, 200, nodes=range(1))  # node 1's pod was lost before it wrote step 200
    for _ in range(5):
        assert node0.sync_once() is False
    assert _committed(remote) == [100]
    assert layout.part_name(0) in remote.listing(layout.step_dirname(200))

    # a manifest that names a rank's file S3 lacks (put by hand) is skipped by restore too
    broken = layout.step_dirname(300)
    save(roots, 300, nodes=range(1))
    local = LocalStore(roots[0]).path(broken)
    for path in gangparts.node_paths(0, PPN):
        remote.upload_file(broken, path, local / path)
    remote.upload_file(broken, layout.MANIFEST, local / layout.MANIFEST)
    with caplog.at_level(logging.WARNING, logger="spotrun"):
        assert _restore(remote, tmp_path / "fresh") == 100
    assert "rank-00002" in caplog.text and "missing" in caplog.text

    # once node 1 saves a newer step, it is committed and the abandoned 200 is said and swept
    remote.delete(broken)
    save(roots, 400)
    node1.sync_once()
    with caplog.at_level(logging.INFO, logger="spotrun"):
        wait_for(node0.sync_once, timeout=300, what="step 400's commit")
    assert _committed(remote) == [400, 100]
    assert "step 200 was never committed" in caplog.text
    assert layout.step_dirname(200) in remote.names()  # within what retention keeps (2)
    save(roots, 500)
    node1.sync_once()
    wait_for(node0.sync_once, timeout=300, what="step 500's commit")
    assert _committed(remote) == [500, 400]  # retention: keep=2
    assert layout.step_dirname(200) not in remote.names()  # the leftover older than both


def test_node_0_commits_an_older_complete_step_while_the_newest_waits(
    s3: S3Endpoint, s3_bucket: str, tmp_path: Path
) -> None:
    """Node 1 uploads slower than the trainer saves: its part of step 100 is up when step 200
    is written everywhere. Node 0 commits 100 meanwhile, not waiting on 200 alone (which,
    with node 1 always moving on to its newest part, could never commit anything)."""
    roots = [tmp_path / "node-0", tmp_path / "node-1"]
    node0, node1 = _syncers(s3, s3_bucket, roots)
    remote = _remote(s3, s3_bucket)
    save(roots, 100)
    assert node1.sync_once() is True  # node 1's part of 100 is in S3
    save(roots, 200)  # before node 0 looked; node 1 has not uploaded 200 yet

    wait_for(lambda: (node0.sync_once() or True) and node0.durable_step == 100, timeout=300,
             what="node 0 to commit step 100 while 200 waits")
    assert _committed(remote) == [100]
    wait_for(lambda: node0.sync_once() is False and node0.pending, timeout=300,
             what="node 0 to say step 200 waits")
    assert node0.pending is not None and "step 200" in node0.pending

    assert node1.sync_once() is True
    wait_for(node0.sync_once, timeout=300, what="step 200's commit")
    assert _committed(remote) == [200, 100]


def test_a_hostile_part_is_never_uploaded(
    s3: S3Endpoint, s3_bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    roots = [tmp_path / "node-0", tmp_path / "node-1"]
    node1 = _syncers(s3, s3_bucket, roots)[1]
    remote = _remote(s3, s3_bucket)
    save(roots, 100, nodes=range(1, 2))
    folder = LocalStore(roots[1]).path(layout.step_dirname(100))
    part = Part.model_validate_json((folder / layout.part_name(1)).read_bytes())
    secret = tmp_path / "secret"
    secret.write_bytes(b"not yours")
    lies = {
        "another step": part.model_copy(update={"step": 90}),
        "a path outside": part.model_copy(
            update={"files": [*part.files[:-1], _entry("../../secret", b"not yours")]}
        ),
        "a size that lies": part.model_copy(
            update={"files": [*part.files[:-1], part.files[-1].model_copy(update={"size": 3})]}
        ),
    }
    with caplog.at_level(logging.ERROR, logger="spotrun"):
        for what, lie in lies.items():
            (folder / layout.part_name(1)).write_bytes(lie.to_json())
            node1.refused.clear()
            caplog.clear()
            node1.sync_once()
            assert node1.part_step is None, what
            assert "not uploading" in caplog.text and str(folder) in caplog.text, what
    assert remote.names() == [] or remote.listing(layout.step_dirname(100)).keys() <= {
        p for p in gangparts.node_paths(1, PPN)
    }
    # a rank file swapped for a link to a file outside: refused, never followed
    (folder / layout.part_name(1)).write_bytes(part.to_json())
    target = folder / part.files[0].path
    target.unlink()
    target.symlink_to(secret)
    node1.refused.clear()
    with caplog.at_level(logging.ERROR, logger="spotrun"):
        assert node1.sync_once() is False
    assert node1.part_step is None and "refused" in caplog.text
    assert layout.part_name(1) not in remote.listing(layout.step_dirname(100))


def test_sigterm_while_node_0_waits_for_a_part_ends_by_the_grace_deadline(
    s3: S3Endpoint, s3_bucket: str, tmp_path: Path
) -> None:
    roots = [tmp_path / "node-0", tmp_path / "node-1"]
    uri = f"s3://{s3_bucket}/jobs/gang"
    remote = _remote(s3, s3_bucket)
    gang = {"SPOTRUN_NNODES": "2", "SPOTRUN_NPROC_PER_NODE": str(PPN)}
    env = run_env(s3.env(), roots[0], uri, SPOTRUN_NODE_RANK="0", SPOTRUN_GRACE_SECONDS="5")
    sidecar = Sidecar({**env, **gang}, tmp_path, "node-0")
    try:
        wait_for(sidecar.started, timeout=120, what="node 0's sidecar startup")
        save(roots, 100, nodes=range(1))  # node 1 never gets to upload its part
        name = layout.step_dirname(100)
        wait_for(lambda: layout.part_name(0) in remote.listing(name), what="node 0's part")
        marker.write(roots[0], 100, "preemption")  # the trainer saved step 100 and exited
        sidecar.proc.send_signal(signal.SIGTERM)
        assert sidecar.proc.wait(timeout=120) == 0  # bounded by the 5 s grace, not stuck
    finally:
        sidecar.kill()
    message = json.loads(sidecar.message.read_text())
    assert message["finalSaved"] is False and message["committed"] is False
    assert (message["nodeRank"], message["nnodes"], message["partStep"]) == (0, 2, 100)
    assert "grace deadline reached" in message["note"] and "node(s) 1" in message["note"]
    assert not remote.has_manifest(name)

    # node 1's sidecar: its final save is done once its part is up
    save(roots, 100, nodes=range(1, 2))
    env1 = run_env(s3.env(), roots[1], uri, SPOTRUN_NODE_RANK="1")
    other = Sidecar({**env1, **gang}, tmp_path, "node-1")
    try:
        wait_for(other.started, timeout=120, what="node 1's sidecar startup")
        marker.write(roots[1], 100, "preemption")
        other.proc.send_signal(signal.SIGTERM)
        assert other.proc.wait(timeout=120) == 0
    finally:
        other.kill()
    message = json.loads(other.message.read_text())
    assert message["finalSaved"] is True and message["partStep"] == 100
    assert "committed" not in message and not remote.has_manifest(name)
