"""The Checkpointer's gang side: one rank of a multi-node (or multi-process) torch.distributed job.

Started when a process group of more than one rank is up. It agrees on stop requests at each
step boundary, snapshots this rank's part (its RNG streams, its ``shards``), writes and prunes
the gang checkpoint (``gangsave``) and restores this rank's part (``gangread``).

``shards`` (the Checkpointer argument) are the states that differ per rank: a sharded
optimizer's local optimizer (``ZeroRedundancyOptimizer(...).optim``), an FSDP model's local
state behind an object with ``state_dict()``/``load_state_dict()`` of plain tensors (e.g.
``get_model_state_dict(model, options=StateDictOptions(full_state_dict=False))`` with each
DTensor's ``to_local()``). With shards the checkpoint is ``sharded``: it restores only at the
world size that wrote it. Without, it is ``replicated`` (DDP): global rank 0's top-level
payload holds the model and optimizer, and any world size restores it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from . import distributed, gangread, gangsave, gangworld, layout, rng
from .components import CheckpointMismatchError, Stateful
from .gangcomm import GangComm
from .localstore import LocalStore
from .prune import prune
from .retention import KeepBest
from .scriptstate import freeze
from .snapshot import SnapshotBuffer

log = logging.getLogger("spotrun")


class Gang:
    def __init__(self, world: gangworld.World, shards: dict[str, Stateful]) -> None:
        self.world = world
        self.shards = shards
        self.mode = "sharded" if shards else "replicated"
        self.comm = GangComm()
        self._buffer = SnapshotBuffer()

    @classmethod
    def start(cls, shards: dict[str, Stateful] | None) -> Gang | None:
        """A Gang when torch.distributed runs more than one rank, else None (``shards``
        then raise: there is nothing to shard over). A process the operator made one rank of
        a gang (SPOTRUN_NNODES / SPOTRUN_NPROC_PER_NODE) or torchrun started as one of several
        is refused without a running process group: alone, it would train on its own and
        write no part of the gang's checkpoints."""
        world = gangworld.from_env(os.environ)  # plain `python` in a gang pod: refused here
        if not distributed.active() or distributed.world_size() < 2:
            if world.is_gang:
                raise gangworld.GangEnvError(
                    f"this process is rank {world.rank} of {world.world_size} (torchrun's env) "
                    "but torch.distributed is not running: call init_process_group before "
                    "creating the Checkpointer"
                )
            if shards:
                raise ValueError(
                    "shards= holds per-rank state, but torch.distributed is not running with "
                    "more than one rank: call init_process_group (torchrun) before creating "
                    "the Checkpointer, or pass that state as optimizer=/extras="
                )
            return None
        actual = (distributed.rank(), distributed.world_size())
        if (world.rank, world.world_size) != actual:
            raise gangworld.GangEnvError(
                f"torch.distributed runs rank {actual[0]} of {actual[1]} but the env says "
                f"RANK={world.rank} WORLD_SIZE={world.world_size}: launch with torchrun and "
                "init_process_group from its env"
            )
        return cls(world, dict(shards or {}))

    def agree_stop(self, requested: bool) -> bool:
        return self.comm.any_stop(requested)

    def rank_payload(self, rng_state: dict[str, Any], step: int) -> gangsave.Payload:
        """This rank's part, copied now: its RNG streams and its shards' state."""
        tensors: list[tuple[str, torch.Tensor]] = []
        shards = {
            n: freeze(s.state_dict(), f"shards[{n!r}]", tensors) for n, s in self.shards.items()
        }
        structure, flat = gangread.rank_payload(rng_state, shards, step)
        self._buffer.take(flat)
        image, size = self._buffer.file_image()
        return gangsave.Payload(image, size, structure)

    def write(
        self,
        store: LocalStore,
        save: gangsave.GangSave,
        top: gangsave.Payload | None,
        mine: gangsave.Payload,
    ) -> Path:
        return gangsave.write(store, self.comm, self.world, save, top, mine)

    def prune(self, store: LocalStore, keep: int, best: KeepBest | None) -> None:
        """Retention as global rank 0 decides it (its directory holds the manifests); each
        node's local rank 0 deletes the same steps from its own directory."""
        deleted: list[int] = []
        if self.world.rank == 0:
            try:
                deleted = prune(store, keep, best)
            except OSError as e:
                log.warning("spotrun: could not delete old checkpoints in %s: %s", store.dir, e)
        decided = self.comm.all_gather_json(deleted)[0]
        if self.world.rank != 0 and self.world.local_rank == 0:
            for step in decided if isinstance(decided, list) else []:
                if isinstance(step, int):
                    store.delete(layout.step_dirname(step))

    def restore(self, store: LocalStore) -> gangread.GangLoaded | None:
        return gangread.newest_common(store, self.comm, self.world)

    def apply_rank(self, found: gangread.GangLoaded, where: str) -> None:
        """After the top-level state is applied: this rank's RNG streams and shards."""
        part = found.rank_state
        if part is None:  # a rank the checkpoint's smaller world did not have
            rng.derive(found.state["rng"], self.world.rank)
            log.info(
                "spotrun: rank %d is new (the checkpoint has %d ranks): its RNG streams are "
                "derived from the checkpoint's; not bit-exact with the run that wrote it",
                self.world.rank,
                found.saved_world,
            )
            return
        rng.restore(part["rng"])
        saved = part.get("shards", {})
        for name, obj in self.shards.items():
            if name not in saved:
                raise CheckpointMismatchError(
                    f"{where} holds no shard {name!r} for rank {self.world.rank} (saved in "
                    f"{_mode(found)} mode); restore into the same setup that wrote it"
                )
            obj.load_state_dict(saved[name])


def _mode(found: gangread.GangLoaded) -> str:
    world = found.loaded.manifest.world
    return "single-rank" if world is None else world.mode
