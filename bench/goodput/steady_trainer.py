"""The replay's training job: fixed-length steps on a small model, checkpointed by spotrun.

    python bench/goodput/steady_trainer.py --step-seconds 0.1 --mb 1

Runs until killed (the replay ends it), or up to ``--total-steps`` (the deadline replay). The
step is a sleep plus a tiny forward/backward pass: it uses little CPU, so on a busy machine the
replay measures the spot policy, not the load. Where to save, how often, and whether to use the
SIGTERM notice come from the pod's env (the operator's contract: SPOTRUN_CHECKPOINT_DIR, the
job's spec.checkpoint, SPOTRUN_SAVE_AT_ONCE); SPOTRUN_PROGRESS_FILE logs every step for the
replay to read.
"""

from __future__ import annotations

import argparse
import time

import torch

from spotrun import Checkpointer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--step-seconds", type=float, default=0.1)
    p.add_argument("--mb", type=float, default=1.0, help="state size (params + momentum)")
    p.add_argument("--total-steps", type=int, default=0, help="stop there (0: never)")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    width = max(int((args.mb * 2**20 / 4 / 2) ** 0.5), 8)
    model = torch.nn.Linear(width, width)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    with Checkpointer(model=model, optimizer=opt) as ckpt:
        ckpt.restore()
        while not args.total_steps or ckpt.global_step < args.total_steps:
            loss = model(torch.randn(4, width)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            time.sleep(args.step_seconds)
            opt.step()
            if ckpt.step():
                break


if __name__ == "__main__":
    main()
