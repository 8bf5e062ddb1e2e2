"""The collectives a gang's checkpointing needs, on gloo groups of its own.

Two groups, created by every rank at once when the Checkpointer starts: ``agree`` for the
stop agreement at each step boundary (the training thread) and ``save`` for the gang save and
restore (the writer thread, or the training thread when no write is in flight). Each thread
thus keeps to its own group, and both work with CPU tensors under any default backend (NCCL
included). Data crosses as JSON bytes in uint8 tensors: nothing is pickled.
"""

from __future__ import annotations

import json
from typing import Any

import torch
import torch.distributed as dist

from . import jsonsafe

GATHER_LIMIT = 64 * 1024 * 1024  # bytes one rank may send; a file list is a few KiB


class GangComm:
    def __init__(self) -> None:
        self.agree = _gloo_group()
        self.save = _gloo_group()

    def any_stop(self, requested: bool) -> bool:
        """True on every rank when any rank asks to stop (an all-reduce MAX of one flag)."""
        flag = torch.tensor([1 if requested else 0], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.agree)
        return bool(flag.item())

    def all_gather_json(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (JSON-able), in rank order, on every rank (``save`` group)."""
        blob = json.dumps(value).encode()
        if len(blob) > GATHER_LIMIT:
            raise ValueError(f"a gang message of {len(blob)} bytes is over {GATHER_LIMIT}")
        size = torch.tensor([len(blob)], dtype=torch.int64)
        sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(dist.get_world_size())]
        dist.all_gather(sizes, size, group=self.save)
        longest = max(int(s.item()) for s in sizes)
        mine = torch.zeros(longest, dtype=torch.uint8)
        mine[: len(blob)] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
        out = [torch.zeros(longest, dtype=torch.uint8) for _ in sizes]
        dist.all_gather(out, mine, group=self.save)
        return [
            jsonsafe.loads(t[: int(s.item())].numpy().tobytes())
            for t, s in zip(out, sizes, strict=True)
        ]


def _gloo_group() -> dist.ProcessGroup:
    group = dist.new_group(backend="gloo")
    if not isinstance(group, dist.ProcessGroup):  # this rank is outside it: never for all ranks
        raise RuntimeError("torch.distributed.new_group left this rank out of the gang's group")
    return group
