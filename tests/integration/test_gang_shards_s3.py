"""A sharded gang checkpoint through the real S3 server (issue 14): two "nodes" of one process
each (gloo over 127.0.0.1), every rank with its own checkpoint directory and the SPOTRUN_* gang
env the operator sets, each saving its own ZeroRedundancyOptimizer shard; each node's sidecar
syncer uploads its part, node 0 commits; fresh, empty directories restored from S3 the way a
new attempt's sidecars do give every rank back its own shard, bit for bit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.optim import ZeroRedundancyOptimizer

from spotrun import Checkpointer, integrity, layout
from spotrun.gangparts import Role
from spotrun.gangsync import GangSyncer
from spotrun.localstore import LocalStore
from spotrun.s3store import S3Store
from spotrun.syncer import Syncer
from tests.conftest import S3Endpoint
from tests.integration.s3util import wait_for
from tests.integration.test_gang_shards import _port, _shard, train

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("s3_credentials")]

NNODES = 2
STEPS = 3


def _rank(rank: int, port: int, roots: list[str], restore: bool) -> None:
    """Rank ``rank`` on node ``rank`` (one process a node): trains STEPS steps and saves, or
    restores; writes its optimizer shard as JSON beside its checkpoints."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
        WORLD_SIZE=str(NNODES), LOCAL_RANK="0", LOCAL_WORLD_SIZE="1", GROUP_RANK=str(rank),
        SPOTRUN_NNODES=str(NNODES), SPOTRUN_NODE_RANK=str(rank), SPOTRUN_NPROC_PER_NODE="1",
    )
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    zero = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.Adam)
    root = roots[rank]
    ckpt = Checkpointer(root, model=model, shards={"optimizer": zero.optim}, handle_signals=False)
    if restore:
        assert ckpt.restore() == STEPS
        out = "restored"
    else:
        assert ckpt.restore() == 0
        train(model, zero, ckpt, STEPS)
        out = "saved"
    ckpt.close()  # the final save (step STEPS) on the first run
    Path(root, f"{out}.json").write_text(json.dumps(_shard(zero)))
    dist.destroy_process_group()


def test_a_sharded_checkpoint_round_trips_through_s3(
    s3: S3Endpoint, s3_bucket: str, tmp_path: Path
) -> None:
    saved = [tmp_path / f"attempt-1-node-{n}" for n in range(NNODES)]
    mp.spawn(_rank, args=(_port(), [str(r) for r in saved], False), nprocs=NNODES)
    shards = [json.loads((r / "saved.json").read_text()) for r in saved]
    assert shards[0] and shards[1] and shards[0] != shards[1]  # each rank its own shard

    def remote() -> S3Store:
        return S3Store(s3_bucket, "jobs/sharded", endpoint=s3.endpoint_url)

    syncers = [
        GangSyncer(LocalStore(r), remote(), Role(n, NNODES, 1), keep=2)
        for n, r in enumerate(saved)
    ]
    assert syncers[1].sync_once() is True  # node 1's part is up
    wait_for(syncers[0].sync_once, timeout=300, what="node 0's commit of the gang's checkpoint")
    name = layout.step_dirname(STEPS)
    listed = remote().listing(name)
    assert {f"rank-{r:05d}/{layout.TENSORS}" for r in range(NNODES)} <= set(listed)
    assert remote().has_manifest(name)

    # attempt 2: empty directories, each filled from S3 by its sidecar's restore
    fresh = [tmp_path / f"attempt-2-node-{n}" for n in range(NNODES)]
    for r in fresh:
        syncer = Syncer(LocalStore(r), remote(), check=integrity.load_framed)
        assert syncer.restore_newest() == STEPS
    mp.spawn(_rank, args=(_port(), [str(r) for r in fresh], True), nprocs=NNODES)
    for rank, root in enumerate(fresh):
        assert json.loads((root / "restored.json").read_text()) == shards[rank]
