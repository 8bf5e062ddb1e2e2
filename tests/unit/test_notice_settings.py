"""What each setting does to a Checkpointer that gets SIGTERM (a real signal to this process):
by default the next ``step()`` saves; opted in (``save_at_once=False``,
``SPOTRUN_SAVE_AT_ONCE=0``), with the notice's length known and a save measured, it trains on
(``step()`` returns False and saves nothing); an unknown grace period or no measurement make
the next ``step()`` save all the same; the argument wins over the variable."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spotrun import Checkpointer, distributed, reader
from spotrun.localstore import LocalStore
from tests.unit.conftest import Net, train_steps

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _no_pod_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("SPOTRUN_GRACE_SECONDS", "SPOTRUN_SAVE_AT_ONCE", "SPOTRUN_STORAGE_URI"):
        monkeypatch.delenv(name, raising=False)
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def _after_sigterm(ckdir: Path, steps_before: int, **kw: Any) -> tuple[list[bool], int | None]:
    """Train ``steps_before`` steps saving each, send SIGTERM, take 3 more steps (unless one
    says stop). Returns what those step() calls returned and the newest step saved by then."""
    import torch

    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ckpt = Checkpointer(
        ckdir, model=model, optimizer=opt, interval_steps=1, exit_on_preemption=False, **kw
    )
    try:
        ckpt.restore()
        train_steps(ckpt, model, opt, steps_before)
        ckpt.wait()
        os.kill(os.getpid(), signal.SIGTERM)
        said: list[bool] = []
        while len(said) < 3 and not any(said):
            loss = model(torch.randn(8, 4)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            said.append(ckpt.step())
        ckpt.wait()
        newest = reader.newest_valid(LocalStore(ckdir))
        return said, newest.step if newest else None
    finally:
        ckpt.close()


def test_with_a_known_notice_and_a_measured_save_it_trains_on(
    ckdir: Path, spotrun_log: pytest.LogCaptureFixture
) -> None:
    said, saved = _after_sigterm(ckdir, 4, grace_seconds=600, save_at_once=False)
    assert said == [False, False, False] and saved == 4  # no save during the notice
    assert "SIGTERM: deadline in " in spotrun_log.text and "training on until" in spotrun_log.text


def test_the_grace_period_from_the_pod_env_is_the_notice(
    ckdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPOTRUN_GRACE_SECONDS", "600")
    monkeypatch.setenv("SPOTRUN_SAVE_AT_ONCE", "0")
    assert _after_sigterm(ckdir, 4) == ([False, False, False], 4)


@pytest.mark.parametrize(
    ("kw", "env", "why"),
    [
        ({"grace_seconds": 600}, {}, "save_at_once (the default"),
        ({"grace_seconds": 600, "save_at_once": True}, {"SPOTRUN_SAVE_AT_ONCE": "0"},
         "save_at_once (the default"),
        ({"grace_seconds": 600}, {"SPOTRUN_SAVE_AT_ONCE": "1"}, "save_at_once (the default"),
        ({"save_at_once": False}, {}, "the grace period is unknown"),  # a laptop's kill
    ],
)
def test_asked_to_or_with_an_unknown_notice_it_saves_at_the_next_step(
    ckdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    spotrun_log: pytest.LogCaptureFixture,
    kw: dict[str, Any],
    env: dict[str, str],
    why: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _after_sigterm(ckdir, 4, **kw) == ([True], 5)
    assert why in spotrun_log.text and "SIGTERM received, saving step 5" in spotrun_log.text


def test_the_argument_wins_over_the_variable(ckdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTRUN_SAVE_AT_ONCE", "1")
    assert _after_sigterm(ckdir, 4, grace_seconds=600, save_at_once=False)[0] == [False] * 3


def test_without_a_measured_save_it_saves_at_the_next_step(
    ckdir: Path, spotrun_log: pytest.LogCaptureFixture
) -> None:
    assert _after_sigterm(ckdir, 0, grace_seconds=600, save_at_once=False) == ([True], 1)
    assert "no save+upload measured yet" in spotrun_log.text


def test_under_ddp_every_rank_saves_at_the_next_step(
    ckdir: Path, monkeypatch: pytest.MonkeyPatch, spotrun_log: pytest.LogCaptureFixture
) -> None:
    """Each rank measures its own times: trained on, two ranks could pick different steps and
    meet at different barriers. (World size 2 as torch.distributed would report it.)"""
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    assert _after_sigterm(ckdir, 4, grace_seconds=600, save_at_once=False) == ([True], 5)
    assert "under DDP" in spotrun_log.text
