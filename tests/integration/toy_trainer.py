"""A trainer with a state of a chosen size, for tests that kill it at awkward instants.

    python toy_trainer.py DIR --mb 20 --interval 1 --steps 100000        # trains and saves
    python toy_trainer.py DIR --mb 20 --zygote                           # forks one per line
    python toy_trainer.py DIR --ready R --go G       # writes its restored step to R, waits for G
In zygote mode torch is imported once; each line on stdin forks a fresh trainer (so dozens of
SIGKILLs cost no import time), printing ``pid N`` and later ``exit N <status>``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import torch

from spotrun import Checkpointer


def train(
    directory: str,
    mb: int,
    interval: int,
    steps: int,
    keep: int = 3,
    ready: Path | None = None,
    go: Path | None = None,
) -> None:
    torch.manual_seed(0)
    width = max(int((mb * 2**20 / 4 / 3) ** 0.5), 8)  # params + two Adam moments = mb
    model = torch.nn.Linear(width, width)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    with Checkpointer(
        directory, model=model, optimizer=opt, interval_steps=interval, keep=keep
    ) as ckpt:
        ckpt.restore()
        if ready is not None:
            ready.with_suffix(".tmp").write_text(str(ckpt.global_step))
            ready.with_suffix(".tmp").rename(ready)  # whole, never read half-written
        while go is not None and not go.exists():
            time.sleep(0.05)
        x = torch.randn(4, width)
        while ckpt.global_step < steps:
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            ckpt.step()


def zygote(directory: str, mb: int, interval: int, steps: int) -> None:
    # the first optimizer step imports ~800 modules (seconds): pay for it once, before forking
    warm = torch.nn.Linear(2, 2)
    warm(torch.ones(1, 2)).sum().backward()
    torch.optim.Adam(warm.parameters()).step()
    for _ in sys.stdin:
        pid = os.fork()
        if pid == 0:
            train(directory, mb, interval, steps)
            os._exit(0)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {pid} {status}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--mb", type=int, default=20)
    p.add_argument("--interval", type=int, default=1)
    p.add_argument("--steps", type=int, default=10**9)
    p.add_argument("--keep", type=int, default=3)
    p.add_argument("--zygote", action="store_true")
    p.add_argument("--ready", type=Path, help="write the restored step here once restored")
    p.add_argument("--go", type=Path, help="after restoring, train only once this file exists")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    if args.zygote:
        zygote(args.dir, args.mb, args.interval, args.steps)
    else:
        train(args.dir, args.mb, args.interval, args.steps, args.keep, args.ready, args.go)


if __name__ == "__main__":
    main()
