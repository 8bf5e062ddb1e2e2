"""Sharded gang checkpoints: each rank saves and restores its own optimizer shard (a
ZeroRedundancyOptimizer's local optimizer, passed as ``shards=``), and such a checkpoint
refuses to restore at another world size, naming both. Two ranks in processes of their own
(gloo over 127.0.0.1, one shared checkpoint directory)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.optim import ZeroRedundancyOptimizer

from spotrun import Checkpointer, CheckpointMismatchError, layout

pytestmark = pytest.mark.integration

WORLD = 2


def _setup(rank: int, port: int) -> tuple[nn.Module, ZeroRedundancyOptimizer]:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(WORLD),
        GROUP_RANK="0",
    )
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    zero = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.Adam)
    return model, zero


def _shard(zero: ZeroRedundancyOptimizer) -> dict[str, list[float]]:
    state = zero.optim.state_dict()["state"]
    return {str(k): v["exp_avg"].flatten().tolist() for k, v in state.items()}


def train(model: nn.Module, zero: ZeroRedundancyOptimizer, ckpt: Checkpointer, steps: int) -> None:
    """``steps`` steps of the gang, each ending in ``ckpt.step()``."""
    for _ in range(steps):
        loss = model(torch.randn(4, 8)).square().mean()
        zero.zero_grad()
        loss.backward()
        for p in model.parameters():  # the gradients DDP would have averaged
            assert p.grad is not None
            dist.all_reduce(p.grad)
        zero.step()
        ckpt.step()


def _train_and_save(rank: int, port: int, root: str) -> None:
    model, zero = _setup(rank, port)
    ckpt = Checkpointer(root, model=model, shards={"optimizer": zero.optim}, handle_signals=False)
    ckpt.restore()
    train(model, zero, ckpt, 3)
    ckpt.close()  # the final save, step 3
    Path(root, f"shard-{rank}.json").write_text(json.dumps(_shard(zero)))
    dist.destroy_process_group()


def _restore(rank: int, port: int, root: str) -> None:
    model, zero = _setup(rank, port)
    with Checkpointer(
        root, model=model, shards={"optimizer": zero.optim}, handle_signals=False
    ) as ckpt:
        assert ckpt.restore() == 3
    Path(root, f"restored-{rank}.json").write_text(json.dumps(_shard(zero)))
    dist.destroy_process_group()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_each_rank_restores_its_own_shard_and_another_world_size_is_refused(
    tmp_path: Path,
) -> None:
    root = str(tmp_path)
    mp.spawn(_train_and_save, args=(_port(), root), nprocs=WORLD)
    head = json.loads(
        (tmp_path / "checkpoints" / layout.step_dirname(3) / "MANIFEST.json").read_text()
    )
    assert head["world"]["mode"] == "sharded"
    shards = [json.loads((tmp_path / f"shard-{r}.json").read_text()) for r in range(WORLD)]
    assert shards[0] and shards[1] and shards[0] != shards[1]  # each rank its own

    mp.spawn(_restore, args=(_port(), root), nprocs=WORLD)
    for rank in range(WORLD):
        assert json.loads((tmp_path / f"restored-{rank}.json").read_text()) == shards[rank]

    single = Checkpointer(
        root,
        model=nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 2)),
        handle_signals=False,
    )
    with pytest.raises(CheckpointMismatchError, match="sharded over 2 ranks .* this run has 1"):
        single.restore()
    single.close()
