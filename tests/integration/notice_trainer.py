"""A deterministic trainer whose steps take a while, for the tests of what SIGTERM's notice is
used for. It saves every ``--interval`` steps (so a save time is measured), trains to
``--steps`` (resuming where a checkpoint left off), and echoes the first SIGTERM with the step
it arrived at (a handler installed before the Checkpointer's, which chains it):

    python notice_trainer.py DIR --steps 300 --step-seconds 0.05

prints ``step N`` after each step and ``signal at step N`` at the first SIGTERM. The step's
duration stands for the forward/backward pass of a real model (a sleep: it uses no CPU, so
the test measures the policy, not the machine's load).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import time
from types import FrameType

import numpy as np
import torch

from spotrun import Checkpointer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--interval", type=int, default=5)
    p.add_argument("--step-seconds", type=float, default=0.05)
    p.add_argument("--mb", type=float, default=0.01, help="state size (params + momentum)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)  # every RNG a checkpoint holds starts the same in every run
    width = max(int((args.mb * 2**20 / 4 / 2) ** 0.5), 8)
    model = torch.nn.Linear(width, width)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    ckpt: Checkpointer | None = None

    def echo(signum: int, frame: FrameType | None) -> None:
        del frame
        if ckpt is not None:  # one write: the watchdog may log the same instant
            os.write(1, f"signal at step {ckpt.global_step}\n".encode())

    signal.signal(signal.SIGTERM, echo)
    with Checkpointer(args.dir, model=model, optimizer=opt, interval_steps=args.interval) as c:
        ckpt = c
        c.restore()
        while c.global_step < args.steps:
            x = torch.randn(4, width)  # from the checkpointed RNG: a resume draws the same
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            time.sleep(args.step_seconds)
            opt.step()
            if c.step():
                break
            print(f"step {c.global_step}", flush=True)


if __name__ == "__main__":
    main()
