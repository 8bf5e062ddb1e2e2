"""The README's loop as a process, for tests that signal it at chosen instants.

    python readme_loop.py DIR [--epochs 3] [--hang-at-epoch-end E] [--on-interrupt raise]
                              [--cleanup-seconds S] [--logging none|basic]

Three batches an epoch; after each epoch ``sched.step()`` (StepLR, halving) and an
"evaluation" that counts itself in extras and anneals ``ckpt.state.lr``. Prints "step N" after
each step, "evaluating E" at each epoch end (and, with ``--hang-at-epoch-end E``, hangs there),
and at the end "final lr=... last_epoch=... evaluations=... state_lr=... weights=...".
``except KeyboardInterrupt`` inside the ``with`` prints "cleanup ran" after
``--cleanup-seconds`` and exits 3. No periodic saves.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import torch
from torch.utils.data import TensorDataset

from spotrun import Checkpointer, ResumableLoader


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--hang-at-epoch-end", type=int, default=None)
    p.add_argument("--step-seconds", type=float, default=0.0)
    p.add_argument("--on-interrupt", default="exit")
    p.add_argument("--cleanup-seconds", type=float, default=0.0)
    p.add_argument("--logging", default="none")
    args = p.parse_args()
    if args.logging == "basic":
        logging.basicConfig(level=logging.INFO, format="LOG %(message)s")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    loader = ResumableLoader(TensorDataset(torch.randn(12, 4)), batch_size=4, seed=0)
    extras = {"evaluations": 0}
    with Checkpointer(
        args.dir,
        model=model,
        optimizer=opt,
        scheduler=sched,
        loader=loader,
        extras=extras,
        interval_steps=10**9,
        on_interrupt=args.on_interrupt,
    ) as ckpt:
        ckpt.state.lr = 1.0
        ckpt.restore()
        try:
            for epoch in loader.epochs(args.epochs):
                for (x,) in loader:
                    opt.zero_grad()
                    model(x).pow(2).mean().backward()
                    opt.step()
                    ckpt.step()
                    print(f"step {ckpt.global_step}", flush=True)
                    time.sleep(args.step_seconds)
                sched.step()
                extras["evaluations"] += 1
                ckpt.state.lr /= 4
                print(f"evaluating {epoch}", flush=True)
                while epoch == args.hang_at_epoch_end:
                    time.sleep(1)  # an evaluation that outlasts the grace period
        except KeyboardInterrupt:
            time.sleep(args.cleanup_seconds)
            print("cleanup ran", flush=True)
            sys.exit(3)
    weights = float(sum(p.detach().double().sum() for p in model.parameters()))
    print(
        f"final lr={opt.param_groups[0]['lr']!r} last_epoch={sched.last_epoch} "
        f"evaluations={extras['evaluations']} state_lr={ckpt.state.lr!r} weights={weights!r}",
        flush=True,
    )


if __name__ == "__main__":
    main()
