"""torch.distributed awareness: in DDP only rank 0 writes; the other ranks wait at a barrier.

Every rank holds the same weights and optimizer state under DDP, so one copy is enough. Every
rank must call ``Checkpointer.step()`` at the same steps (step intervals are deterministic; a
SIGTERM reaches every rank of a pod). Each rank restores from the same directory. Per-rank RNG
streams are not saved (rank 0's are); multi-rank tests come with the distributed issue.
"""

from __future__ import annotations

import torch.distributed as dist


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if _active() else 1


def is_writer() -> bool:
    return not _active() or dist.get_rank() == 0


def barrier() -> None:
    if _active():
        dist.barrier()
