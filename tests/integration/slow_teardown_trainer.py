"""A trainer whose interpreter teardown never ends: a module-level object's ``__del__`` waits
forever. After the preemption save spotrun must end the process without that teardown, yet
after the script's own ``finally`` block. argv: checkpoint directory, marker file."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import torch

from spotrun import Checkpointer


class StuckInTeardown:
    def __del__(self) -> None:
        threading.Event().wait()


KEEP = StuckInTeardown()
directory, marker = Path(sys.argv[1]), Path(sys.argv[2])
model = torch.nn.Linear(4, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
ckpt = Checkpointer(directory, model=model, optimizer=opt, interval_steps=1000)
ckpt.restore()
try:
    while True:
        opt.zero_grad()
        model(torch.ones(1, 4)).sum().backward()
        opt.step()
        ckpt.step()
        if ckpt.global_step == 3:
            print("training", flush=True)
        time.sleep(0.01)
finally:
    marker.write_text(f"finally ran at step {ckpt.global_step}\n")
