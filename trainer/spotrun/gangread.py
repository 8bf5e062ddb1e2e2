"""Restore a gang: every rank agrees on the newest checkpoint that every rank can load.

Each rank reads from its node's checkpoint directory (the sidecar restores the whole checkpoint
into every node's; on a shared directory it is all there). A rank loads the top-level payload
and its own ``rank-NNNNN/`` part, and checks the size and CRC32C of the rank parts it stands
for (saved ranks r, r + W, r + 2W... at today's world size W, so every saved rank's part is
checked by someone). The steps whose manifest parses are gathered from every rank; the newest
one that every rank loads wins, older ones are tried in turn, so a checkpoint missing a rank's
part (or whose manifest does not name every rank's files) is never picked.

At another world size in replicated mode the model and optimizer come from the top-level
payload; ranks that did not exist get RNG streams derived from the checkpoint's own (see
``rng.derive``): bit-exactness is claimed only at the same world size. Sharded mode restores
only at the world size that wrote it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import torch

from . import codec, components, layout, reader, rng
from .gangcomm import GangComm
from .gangworld import World
from .integrity import CorruptCheckpointError, Loaded, read_checked, read_manifest
from .manifest import Manifest, ManifestError, UnknownFormatError
from .store import Store
from .transferlog import TransferLog

log = logging.getLogger("spotrun")


@dataclass
class GangLoaded:
    loaded: Loaded  # the top-level payload (and the manifest)
    state: dict[str, Any]  # decoded top-level state
    rank_state: dict[str, Any] | None  # this rank's part; None: the rank did not exist then

    @property
    def saved_world(self) -> int:
        return self.loaded.manifest.world_size


def parseable_steps(store: Store) -> list[int]:
    """Steps whose manifest reads and parses here, newest first (cheap: no payload read)."""
    steps = []
    for step, name in layout.newest_first(store.names()):
        try:
            read_manifest(store, name)
        except UnknownFormatError:
            steps.append(step)  # loading it raises on every rank: never skipped silently
        except (ManifestError, OSError):
            continue
        else:
            steps.append(step)
    return steps


def newest_common(store: Store, comm: GangComm, world: World) -> GangLoaded | None:
    """The newest checkpoint every rank loads, agreed across the gang; None on a fresh start."""
    seen = comm.all_gather_json(parseable_steps(store))
    common = set(seen[0]).intersection(*(set(s) for s in seen[1:]))
    for step in sorted(common, reverse=True):
        name = layout.step_dirname(step)
        found: GangLoaded | None = None
        try:
            found = load_for_rank(store, name, world)
            outcome: dict[str, str] = {}
        except UnknownFormatError as e:
            outcome = {"fatal": str(e)}
        except (ManifestError, CorruptCheckpointError) as e:
            outcome = {"error": str(e)}
        outcomes = comm.all_gather_json(outcome)
        fatal = [o["fatal"] for o in outcomes if "fatal" in o]
        if fatal:
            raise UnknownFormatError(fatal[0])
        refused = [(r, o["error"]) for r, o in enumerate(outcomes) if "error" in o]
        if not refused and found is not None:
            return found
        rank, why = refused[0] if refused else (world.rank, "not loaded")
        log.warning(
            "spotrun: skipping checkpoint %s: rank %d (node %d) cannot load it: %s; trying an "
            "older one",
            name,
            rank,
            world.node_of(rank),
            why,
        )
    return None


def load_for_rank(store: Store, name: str, world: World) -> GangLoaded:
    """What rank ``world.rank`` needs of checkpoint ``name``, checked and decoded."""
    record = read_manifest(store, name)
    check_world(record, world, store.file_uri(name))
    saved = record.world_size
    mine = [r for r in range(world.rank, saved, world.world_size)] if saved > 1 else []
    wanted = {
        *layout.PAYLOAD,
        *(f"{layout.rank_dirname(r)}/{p}" for r in mine for p in layout.PAYLOAD),
    }
    entries = [e for e in record.files if e.path in wanted]
    progress = TransferLog(f"reading {store.file_uri(name)}", sum(e.size for e in entries))
    files = {e.path: read_checked(store, name, e, progress) for e in entries}
    loaded = Loaded(name, record, files)
    state = reader.decode_state(loaded)
    rank_state = None
    if world.rank < saved and saved > 1:
        rank_state = decode_rank(loaded, world.rank)
    return GangLoaded(loaded, state, rank_state)


def check_world(record: Manifest, world: World, where: str) -> None:
    """A sharded checkpoint restores only at the world size that wrote it (pure)."""
    saved = record.world
    if saved is not None and saved.mode == "sharded" and saved.world_size != world.world_size:
        raise components.CheckpointMismatchError(
            f"{where} is sharded over {saved.world_size} ranks ({saved.nnodes} nodes x "
            f"{saved.procs_per_node}) but this run has {world.world_size} ranks: a sharded "
            f"checkpoint restores only at its own world size; run with {saved.world_size} "
            "ranks, or save it in replicated mode"
        )


def decode_rank(loaded: Loaded, rank: int) -> dict[str, Any]:
    """Rank ``rank``'s part: its RNG streams, its progress, its shards (``shards``)."""
    return reader.decode_payload(loaded, layout.rank_dirname(rank), check_rank_state)


def check_rank_state(state: Any, step: int) -> dict[str, Any]:
    """A rank part as ``Checkpointer`` writes it (pure): rng, progress of ``step``, shards."""
    if not isinstance(state, dict):
        raise components.StateError("a rank's state.json does not hold a mapping")
    progress = state.get("progress")
    if not isinstance(progress, dict) or progress.get("step") != step:
        raise components.StateError(f"a rank's part does not record step {step}")
    if not isinstance(state.get("shards", {}), dict):
        raise components.StateError("a rank's 'shards' entry is not a mapping")
    rng.check(state.get("rng"))
    return state


def rank_payload(
    rng_state: dict[str, Any], shards: dict[str, Any], step: int
) -> tuple[bytes, dict[str, torch.Tensor]]:
    """A rank part's state.json and tensors, as ``decode_rank`` reads them."""
    state = {"rng": rng_state, "shards": shards, "progress": {"step": step}}
    structure, tensors = codec.encode(state)
    return json.dumps(structure).encode(), tensors
