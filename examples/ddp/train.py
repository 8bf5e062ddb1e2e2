"""The digits CNN (examples/digits) under DDP: gloo on CPU (NCCL with one GPU per process where
``SPOTRUN_DEVICE`` or the machine says cuda), launched by torchrun, one checkpoint per gang.

    torchrun --nnodes 2 --nproc-per-node 2 --node-rank $NODE --master-addr $HEAD \
        --master-port 29500 examples/ddp/train.py --epochs 10

Each node (pod) keeps its checkpoints in its own SPOTRUN_CHECKPOINT_DIR. A SIGTERM to any node's
torchrun (it forwards the signal to its workers) stops every rank at the same step: each rank
saves its part (its RNG streams), global rank 0 the model and optimizer, and all exit 0. Started
again (on as many nodes, or fewer) it resumes from that step; at the same world size the final
weights are those of an uninterrupted run, bit for bit. ``ResumableLoader`` hands each rank its
slice of every global batch and checkpoints the global position, so after a change of world
size no sample of the epoch is skipped or seen twice.

``--trace DIR`` writes, per rank, the sample ids of each step (what the tests check).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import random
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import TensorDataset

import spotrun


def digits_example() -> ModuleType:
    """examples/digits/train.py, imported by path (the model and the data come from there)."""
    path = Path(__file__).resolve().parents[1] / "digits" / "train.py"
    spec = importlib.util.spec_from_file_location("digits_train", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16, help="per rank")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=int, default=20, help="checkpoint every N steps")
    parser.add_argument("--trace", type=Path, help="write each rank's sample ids per step here")
    parser.add_argument(
        "--step-delay", type=float, default=0.0, help="sleep after each step (slows demos)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    device = spotrun.device()  # SPOTRUN_DEVICE: cpu where the job's gpu.fallback is cpu
    if device.type == "cuda":  # one GPU per process: gpu.count = procsPerNode
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    # torchrun's env: MASTER_ADDR/PORT, RANK, WORLD_SIZE; gloo on CPU
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank()
    random.seed(args.seed + rank)  # each rank its own streams (dropout), saved per rank
    np.random.seed(args.seed + rank)
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    torch.use_deterministic_algorithms(True)

    digits = digits_example()
    train, test = digits.datasets()
    images, labels = train.tensors
    ids = torch.arange(len(labels))
    # find_unused_parameters: DDP then keeps the gradient buckets it starts with (else it
    # rebuilds them after its first step, which a resumed run takes at another step): the sums
    # run in the same order before and after a restart, so the resume is bit for bit
    model = DistributedDataParallel(
        digits.DigitsCNN().to(device),
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=True,
    )
    torch.manual_seed(args.seed * 1000 + rank)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loader = spotrun.ResumableLoader(
        TensorDataset(images, labels, ids), args.batch_size, shuffle=True, seed=args.seed
    )
    trace = None
    if args.trace is not None:
        args.trace.mkdir(parents=True, exist_ok=True)
        name = f"rank-{rank}-world-{dist.get_world_size()}-pid-{os.getpid()}.jsonl"
        trace = open(args.trace / name, "a", encoding="utf-8")  # noqa: SIM115 (closed below)

    with spotrun.Checkpointer(
        model=model, optimizer=optimizer, loader=loader, interval_steps=args.save_every, keep=3
    ) as ckpt:
        restored = ckpt.restore()
        if trace is not None:
            trace.write(json.dumps({"restored": restored}) + "\n")
        for epoch in loader.epochs(args.epochs):
            for batch_images, batch_labels, batch_ids in loader:
                output = model(batch_images.to(device))
                loss = nn.functional.cross_entropy(output, batch_labels.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if trace is not None:
                    line = {"step": ckpt.global_step + 1, "epoch": epoch, "ids": batch_ids.tolist()}
                    trace.write(json.dumps(line) + "\n")
                    trace.flush()
                ckpt.step(metrics={"loss": loss.item()})
                time.sleep(args.step_delay)
            accuracy = digits.evaluate(model, test, device)
            ckpt.record(accuracy=accuracy)
            if rank == 0:
                logging.info("epoch %d: step %d, accuracy %.3f", epoch, ckpt.global_step, accuracy)
    if trace is not None:
        trace.close()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
