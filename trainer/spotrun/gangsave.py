"""Write one gang checkpoint: every rank its part, each node its PART, global rank 0 the MANIFEST.

Each rank writes ``rank-NNNNN/`` (its RNG streams, its shard in sharded mode) into the step
folder of its node's checkpoint directory; global rank 0 also writes the top-level payload (the
replicated state). The file lists cross the gang as JSON (``GangComm``); then each node's local
rank 0 writes ``PART-node-NNNNN.json`` naming the files of its node's ranks, and, once every
node's PART is written, global rank 0 writes MANIFEST.json naming every rank's files. Every
phase ends in a gather, so every rank raises the same ``GangSaveError`` when any rank failed
(no rank waits for one that gave up), and a MANIFEST is never written over a missing part.
On one shared directory the same files land in one folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import layout, manifest, writer
from .gangcomm import GangComm
from .gangworld import World
from .localstore import LocalStore


class GangSaveError(OSError):
    """A rank of the gang could not write its part: no rank commits this checkpoint."""


@dataclass(frozen=True)
class Payload:
    """One tensors file image (page-aligned, padded) with its real size, and its state.json."""

    image: memoryview
    size: int
    structure: bytes


@dataclass(frozen=True)
class GangSave:
    step: int
    epoch: int
    metrics: dict[str, float]
    reason: str
    mode: str  # replicated | sharded


def write(
    store: LocalStore,
    comm: GangComm,
    world: World,
    save: GangSave,
    top: Payload | None,
    mine: Payload,
) -> Path:
    """This rank's share of the gang save of ``save.step`` (``top`` on global rank 0 only);
    returns the step folder. Raises GangSaveError on every rank when any rank failed."""
    folder = store.dir / layout.step_dirname(save.step)
    files = _phase(comm, world, "writing its files", lambda: _write_files(folder, world, top, mine))
    by_rank: list[list[dict[str, Any]]] = files
    if world.local_rank == 0:
        part = _part(save.step, world, by_rank)
        _phase(
            comm,
            world,
            "writing its PART",
            lambda: writer.write_marker(folder, layout.part_name(world.node_rank), part.to_json()),
        )
    else:
        _phase(comm, world, "writing its PART", lambda: None)
    if world.rank == 0:
        record = _manifest(save, world, by_rank)
        _phase(
            comm,
            world,
            "writing MANIFEST.json",
            lambda: writer.write_marker(folder, layout.MANIFEST, record.to_json()),
        )
    else:
        _phase(comm, world, "writing MANIFEST.json", lambda: None)
    return folder


def _write_files(folder: Path, world: World, top: Payload | None, mine: Payload) -> list[Any]:
    folder.mkdir(parents=True, exist_ok=True)
    if world.local_rank == 0:  # an earlier attempt's markers must not bless the new files
        for stale in (layout.part_name(world.node_rank), layout.MANIFEST):
            (folder / stale).unlink(missing_ok=True)
    entries = []
    if top is not None:
        entries += writer.write_payload(folder, "", top.image, top.size, top.structure)
    rel = layout.rank_dirname(world.rank)
    entries += writer.write_payload(folder, rel, mine.image, mine.size, mine.structure)
    return [e.model_dump() for e in entries]


def _phase(comm: GangComm, world: World, what: str, run: Any) -> list[Any]:
    """Run this rank's part of a phase, then learn every rank's outcome; GangSaveError on all
    ranks naming the first that failed. Returns each rank's result."""
    try:
        outcome: dict[str, Any] = {"ok": run()}
    except Exception as e:  # noqa: BLE001 (raised below on every rank, this one included)
        outcome = {"error": f"{type(e).__name__}: {e}"}
    results = comm.all_gather_json(outcome)
    for rank, result in enumerate(results):
        if not isinstance(result, dict) or "error" in result:
            why = result.get("error") if isinstance(result, dict) else "no answer"
            raise GangSaveError(
                f"rank {rank} (node {world.node_of(rank)}) failed {what}: {why}; the checkpoint "
                "is not committed by any rank"
            )
    return [r["ok"] for r in results]


def _entries(raw: list[dict[str, Any]]) -> list[manifest.FileEntry]:
    return [manifest.FileEntry.model_validate(e) for e in raw]


def _part(step: int, world: World, by_rank: list[list[dict[str, Any]]]) -> manifest.Part:
    mine = [e for r, raw in enumerate(by_rank) if world.node_of(r) == world.node_rank for e in raw]
    return manifest.Part(
        format_version=layout.FORMAT_VERSION,
        step=step,
        node_rank=world.node_rank,
        nnodes=world.nnodes,
        files=_entries(mine),
    )


def _manifest(
    save: GangSave, world: World, by_rank: list[list[dict[str, Any]]]
) -> manifest.Manifest:
    files = _entries([e for raw in by_rank for e in raw])
    record = manifest.new(save.step, save.epoch, files, save.metrics, save.reason)
    gang = manifest.World(
        nnodes=world.nnodes,
        procs_per_node=world.procs_per_node,
        world_size=world.world_size,
        mode=save.mode,
    )
    return record.model_copy(update={"world": gang})
