from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from spotrun import Checkpointer


class Net(torch.nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, width)
        self.out = torch.nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc(x)))


def train_steps(
    ckpt: Checkpointer, model: torch.nn.Module, opt: torch.optim.Optimizer, n: int
) -> None:
    for _ in range(n):
        loss = model(torch.randn(8, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ckpt.step(metrics={"loss": loss.item()})


@pytest.fixture
def spotrun_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="spotrun")
    return caplog


@pytest.fixture
def ckdir(tmp_path: Path) -> Path:
    return tmp_path / "run"
