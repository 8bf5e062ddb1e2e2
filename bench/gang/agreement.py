"""Gang benchmark: the per-step cost of the stop agreement, and the save stall of a gang.

    .venv/bin/python bench/gang/agreement.py [--ranks 4] [--reps 5] [--steps 40] [--width 512]

Spawns ``--ranks`` processes on this machine (gloo over 127.0.0.1, one torch thread each), each
training a DDP MLP (4 x Linear(width, width), batch 32, Adam). Interleaved blocks of ``--steps``
steps, repeated ``--reps`` times so a noisy machine hits every side alike:

1. a DDP step alone, vs the same step plus the agreement (``GangComm.any_stop``: one all-reduce
   MAX of one int on the gang's own gloo group), vs the step plus the whole ``ckpt.step()``;
2. the stall of a periodic gang save (``ckpt.save(wait=False)`` returning on every rank) and
   the time to a committed gang checkpoint (``wait=True``: every rank's part, PARTs, MANIFEST).

Each figure is the median over repetitions of the per-block median, on rank 0 (ranks run in
lock step). Ratios are against the plain DDP step of the same repetition.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def _timed_steps(step: object, steps: int) -> float:
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    torchrun = {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": world, "LOCAL_WORLD_SIZE": world}
    os.environ.update({k: str(v) for k, v in torchrun.items()}, GROUP_RANK="0")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    from spotrun import Checkpointer

    torch.manual_seed(0)
    layers = [nn.Linear(args.width, args.width) for _ in range(4)]
    model = DistributedDataParallel(nn.Sequential(*layers))
    optimizer = torch.optim.Adam(model.parameters())
    batch = torch.randn(32, args.width)

    def train() -> None:
        loss = model(batch).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        ckpt = Checkpointer(
            Path(scratch) / "ck", model=model, optimizer=optimizer, handle_signals=False, keep=2
        )
        gang = ckpt._gang
        assert gang is not None
        rows: dict[str, list[float]] = {
            k: [] for k in ("plain", "agree", "ckpt_step", "stall", "commit")
        }
        for _ in range(args.reps):
            rows["plain"].append(_timed_steps(train, args.steps))
            rows["agree"].append(
                _timed_steps(lambda: (train(), gang.agree_stop(False)), args.steps)
            )
            rows["ckpt_step"].append(_timed_steps(lambda: (train(), ckpt.step()), args.steps))
            started = time.perf_counter()
            ckpt.save(reason="periodic", wait=False)
            rows["stall"].append(time.perf_counter() - started)
            ckpt.wait()
            train()
            ckpt.step()
            started = time.perf_counter()
            ckpt.save(reason="periodic", wait=True)
            rows["commit"].append(time.perf_counter() - started)
        ckpt.close()
    if rank == 0:
        Path(out).write_text(json.dumps(rows))
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--dir", default=None, help="scratch directory (default: the temp dir)")
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        mp.spawn(_worker, args=(args.ranks, port, args, out.name), nprocs=args.ranks)
        rows = json.loads(Path(out.name).read_text())
    plain = statistics.median(rows["plain"])
    print(
        f"gang of {args.ranks} ranks on {os.cpu_count()} CPUs, {args.reps} reps x "
        f"{args.steps} steps, width {args.width}"
    )
    for key, what in (
        ("agree", "DDP step + stop agreement"),
        ("ckpt_step", "DDP step + ckpt.step()"),
    ):
        ratios = [a / p for a, p in zip(rows[key], rows["plain"], strict=True)]
        print(
            f"{what:34s} {statistics.median(rows[key]) * 1e3:8.2f} ms vs plain "
            f"{plain * 1e3:.2f} ms: ratio {statistics.median(ratios):.3f}"
        )
    print(
        f"{'periodic save stall (wait=False)':34s} {statistics.median(rows['stall']) * 1e3:8.2f} ms"
        f" = {statistics.median(rows['stall']) / plain:.2f} plain steps"
    )
    print(
        f"{'gang save committed (wait=True)':34s} {statistics.median(rows['commit']) * 1e3:8.2f} ms"
    )


if __name__ == "__main__":
    main()
