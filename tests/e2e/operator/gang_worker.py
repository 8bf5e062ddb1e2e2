"""One rank of a gang under torchrun, for the operator's gang e2e tests (no spotrun library).

torchrun (``python -m torch.distributed.run gang_worker.py``, every option from the
operator's PET_* variables) starts it; it joins the gloo process group that MASTER_ADDR /
MASTER_PORT name, does one all_reduce of (rank + 1), prints what it saw, and waits for SIGTERM
(then prints that and exits 0), as a trainer that saves and stops would.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist

from spotrun.podenv import PodEnv

stopping = False


def _stop(*_: object) -> None:
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, _stop)
dist.init_process_group("gloo", timeout=timedelta(seconds=120))
rank, world = dist.get_rank(), dist.get_world_size()
total = torch.tensor([float(rank + 1)])
dist.all_reduce(total)
env = PodEnv.from_env()
print(
    f"GANG attempt={env.attempt} node_rank={env.node_rank} rank={rank} world={world} "
    f"sum={int(total.item())} pid={os.getpid()}",
    flush=True,
)
while not stopping:
    time.sleep(0.2)
print(f"GANG rank={rank} stopping on SIGTERM", flush=True)
sys.exit(0)
