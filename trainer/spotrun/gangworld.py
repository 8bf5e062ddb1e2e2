"""Where this process sits in a gang (a multi-node attempt, issue 14), read from torchrun's env.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and ``GROUP_RANK``
(the node rank) for each worker. The operator sets ``SPOTRUN_NNODES``, ``SPOTRUN_NODE_RANK`` and
``SPOTRUN_NPROC_PER_NODE`` on each pod of a gang; when set they must agree with torchrun's, or
ranks would write into the wrong node's part of a checkpoint. Pure: no I/O, no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from . import layout


class GangEnvError(ValueError):
    """torchrun's env and the pod's SPOTRUN_* gang variables disagree, or one is malformed."""


@dataclass(frozen=True)
class World:
    """One rank's place: global ``rank`` of ``world_size``, ``local_rank`` of
    ``procs_per_node`` on node ``node_rank`` of ``nnodes``."""

    rank: int
    world_size: int
    local_rank: int
    procs_per_node: int
    node_rank: int
    nnodes: int

    @property
    def is_gang(self) -> bool:
        return self.world_size > 1

    def node_of(self, rank: int) -> int:
        return layout.node_of_rank(rank, self.procs_per_node)


SINGLE = World(rank=0, world_size=1, local_rank=0, procs_per_node=1, node_rank=0, nnodes=1)


def _int(env: Mapping[str, str], name: str, low: int) -> int | None:
    text = env.get(name)
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 6 or int(text) < low:
        raise GangEnvError(
            f"{name}={text!r} is not a whole number >= {low}; torchrun (or the operator, for "
            "SPOTRUN_*) sets it: unset it or launch with torchrun"
        )
    return int(text)


def from_env(env: Mapping[str, str]) -> World:
    """This process's place, from torchrun's variables (SINGLE when WORLD_SIZE is unset),
    cross-checked with the pod's SPOTRUN_NNODES / SPOTRUN_NODE_RANK / SPOTRUN_NPROC_PER_NODE."""
    world_size = _int(env, "WORLD_SIZE", 1)
    if world_size is None:
        world = SINGLE
    else:
        rank = _int(env, "RANK", 0) or 0
        local_rank = _int(env, "LOCAL_RANK", 0)
        local_size = _int(env, "LOCAL_WORLD_SIZE", 1)
        local_rank = rank if local_rank is None else local_rank
        local_size = world_size if local_size is None else local_size
        world = _torchrun_world(env, rank, world_size, local_rank, local_size)
    _cross_check(env, world)
    return world


def _torchrun_world(
    env: Mapping[str, str], rank: int, world_size: int, local_rank: int, local_size: int
) -> World:
    if world_size % local_size:
        raise GangEnvError(
            f"WORLD_SIZE={world_size} is not a multiple of LOCAL_WORLD_SIZE={local_size}: every "
            "node of a gang runs the same number of processes (torchrun --nproc-per-node)"
        )
    if not (rank < world_size and local_rank < local_size):
        raise GangEnvError(
            f"RANK={rank} / LOCAL_RANK={local_rank} are not below WORLD_SIZE={world_size} / "
            f"LOCAL_WORLD_SIZE={local_size}; launch with torchrun"
        )
    node_rank = _int(env, "GROUP_RANK", 0)
    node_rank = rank // local_size if node_rank is None else node_rank
    if node_rank * local_size + local_rank != rank:
        raise GangEnvError(
            f"RANK={rank} is not GROUP_RANK={node_rank} x LOCAL_WORLD_SIZE={local_size} + "
            f"LOCAL_RANK={local_rank}: spotrun needs torchrun's contiguous ranks per node"
        )
    return World(rank, world_size, local_rank, local_size, node_rank, world_size // local_size)


def _cross_check(env: Mapping[str, str], world: World) -> None:
    pairs = (
        ("SPOTRUN_NNODES", world.nnodes, "nodes", "--nnodes"),
        ("SPOTRUN_NODE_RANK", world.node_rank, "node rank", "--node-rank"),
        ("SPOTRUN_NPROC_PER_NODE", world.procs_per_node, "processes per node", "--nproc-per-node"),
    )
    for name, actual, what, flag in pairs:
        wanted = _int(env, name, 0)
        if wanted is not None and wanted != actual:
            raise GangEnvError(
                f"{name}={wanted} but torchrun runs this process with {actual} {what} (rank "
                f"{world.rank} of {world.world_size}): pass torchrun {flag} ${name} as the "
                "operator's gang env says, or fix the job's spec.nodes / spec.procsPerNode"
            )
