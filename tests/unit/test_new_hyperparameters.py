"""What the README's "Changing a running job" tells a script to do: restore() puts back the
saved learning rate (a new --lr alone does not take), and setting it after restore() does,
into the next checkpoint too."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spotrun import Checkpointer

pytestmark = pytest.mark.unit


def _run(directory: Path, lr: float, steps: int, override: bool) -> tuple[float, float]:
    """One attempt: restore, maybe set ``lr`` the README's way, train ``steps``; returns the
    optimizer's and the scheduler's learning rate right after the restore (and override)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1000, gamma=0.5)
    with Checkpointer(directory, model=model, optimizer=optimizer, scheduler=scheduler,
                      handle_signals=False, interval_steps=1) as ckpt:
        start = ckpt.restore()
        if start and override:
            for group in optimizer.param_groups:
                group["lr"] = lr
            scheduler.base_lrs = [lr] * len(optimizer.param_groups)
        seen = (optimizer.param_groups[0]["lr"], scheduler.base_lrs[0])
        for _ in range(steps):
            loss = model(torch.ones(4, 2)).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            ckpt.step()
            ckpt.wait()
    return seen


def test_restore_keeps_the_saved_learning_rate_unless_the_script_sets_it(tmp_path: Path):
    _run(tmp_path, 0.1, 3, override=False)
    assert _run(tmp_path, 0.5, 1, override=False) == (0.1, 0.1)  # the new arg did not take
    assert _run(tmp_path, 0.5, 1, override=True) == (0.5, 0.5)
    assert _run(tmp_path, 0.9, 0, override=False) == (0.5, 0.5)  # and it was saved
