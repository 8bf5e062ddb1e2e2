"""A trainer for the end-of-run paths: it hangs between steps, or trains until signalled, and
prints a fingerprint of its weights so a test can tell what a checkpoint holds.

    python stuck_trainer.py DIR hang --steps 5   # 5 steps, prints "ready 5 <fp>", then hangs
    python stuck_trainer.py DIR loop             # prints "step N <fp>" before each step(N)
    python stuck_trainer.py DIR report           # restores; prints "restored N <fp>"

Every SIGTERM is echoed as "signal 15" (a handler installed before the Checkpointer's, which
chains it), so a test knows the first one arrived before it sends the second. No periodic saves
(interval 10**9): a checkpoint on disk is one the end of the run wrote.
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from types import FrameType

import torch

from spotrun import Checkpointer


def fingerprint(model: torch.nn.Module) -> str:
    return repr(float(sum(p.detach().double().sum() for p in model.parameters())))


def echo(signum: int, frame: FrameType | None) -> None:
    del frame
    print(f"signal {signum}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("mode", choices=["hang", "loop", "report"])
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    signal.signal(signal.SIGTERM, echo)
    model = torch.nn.Linear(32, 32)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 32)
    with Checkpointer(args.dir, model=model, optimizer=opt, interval_steps=10**9) as ckpt:
        step = ckpt.restore()
        if args.mode == "report":
            print(f"restored {step} {fingerprint(model)}", flush=True)
            return
        while args.mode == "loop" or ckpt.global_step < args.steps:
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
            print(f"step {ckpt.global_step + 1} {fingerprint(model)}", flush=True)
            ckpt.step()
        print(f"ready {ckpt.global_step} {fingerprint(model)}", flush=True)
        while True:  # stuck between steps: a stalled data loader, a hung collective
            time.sleep(1)


if __name__ == "__main__":
    main()
