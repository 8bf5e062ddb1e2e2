"""torch.distributed awareness: is a process group up, and how large is it.

Under torch.distributed with more than one rank the Checkpointer runs as a gang (``gang``):
every rank calls ``step()`` at the same steps, a stop is agreed at a step boundary, and every
rank writes its part of one checkpoint (``gangsave``); restore agrees on one (``gangread``).
"""

from __future__ import annotations

import torch.distributed as dist


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0
