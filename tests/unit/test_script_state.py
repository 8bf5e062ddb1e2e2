"""``ckpt.state`` and ``extras``: the script's own values come back where the script reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from spotrun import Checkpointer
from spotrun.codec import UnsupportedStateError
from tests.unit.conftest import Net, train_steps

pytestmark = pytest.mark.unit


class Counter:
    """An object of the script's with state_dict()/load_state_dict(): restored in place."""

    def __init__(self) -> None:
        self.calls = 0

    def state_dict(self) -> dict[str, int]:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.calls = state["calls"]


def _run(ckdir: Path, **kw: Any) -> tuple[Checkpointer, Net, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return Checkpointer(ckdir, model=model, optimizer=opt, handle_signals=False, **kw), model, opt


def _defaults(ckpt: Checkpointer, counter: Counter) -> None:
    ckpt.state.lr = 20.0
    ckpt.state.best_val = None
    ckpt.state.hidden = (torch.zeros(2, 3), torch.zeros(2, 3))
    ckpt.state.history = []
    ckpt.state.table = {"a": 1, 3: "three"}
    ckpt.state.mask = np.zeros(4, dtype=np.int32)
    ckpt.state.note = ""
    ckpt.state.seen = False
    ckpt.state["counter"] = counter


def test_every_kind_of_value_comes_back_after_a_restore(ckdir: Path) -> None:
    first_counter = Counter()
    ckpt, model, opt = _run(ckdir)
    _defaults(ckpt, first_counter)
    assert ckpt.restore() == 0 and ckpt.state.lr == 20.0  # a fresh start keeps the defaults
    hidden = (torch.randn(2, 3), torch.randn(2, 3))
    ckpt.state.lr /= 4
    ckpt.state.best_val = 1.25
    ckpt.state.hidden = hidden
    ckpt.state.history.extend([0.5, None, "x", [1, 2.0]])  # changed in place, seen at step()
    ckpt.state.table[3] = torch.arange(3)
    ckpt.state.mask = np.arange(4, dtype=np.int32)
    ckpt.state.note = "annealed"
    ckpt.state.seen = True
    first_counter.calls = 7
    train_steps(ckpt, model, opt, 2)
    ckpt.close()

    counter = Counter()
    again, _, _ = _run(ckdir)
    _defaults(again, counter)
    assert again.restore() == 2
    s = again.state
    assert (s.lr, s.best_val, s.note, s.seen) == (5.0, 1.25, "annealed", True)
    assert isinstance(s.hidden, tuple) and all(
        torch.equal(a, b) for a, b in zip(s.hidden, hidden, strict=True)
    )
    assert s.history == [0.5, None, "x", [1, 2.0]]
    assert s.table["a"] == 1 and torch.equal(s.table[3], torch.arange(3))
    assert s.mask.dtype == np.int32 and s.mask.tolist() == [0, 1, 2, 3]
    assert s["counter"] is counter and counter.calls == 7  # loaded in place


def test_attribute_and_item_access_are_one_entry(ckdir: Path) -> None:
    ckpt, _, _ = _run(ckdir)
    ckpt.state["lr"] = 1.0
    ckpt.state.lr *= 2
    assert ckpt.state["lr"] == 2.0 and "lr" in ckpt.state and list(ckpt.state) == ["lr"]
    with pytest.raises(AttributeError, match="ckpt.state has no 'missing'.*default"):
        _ = ckpt.state.missing


def test_a_value_that_would_need_pickle_is_refused_naming_the_key_and_the_fix(
    ckdir: Path,
) -> None:
    ckpt, model, opt = _run(ckdir)
    with pytest.raises(UnsupportedStateError) as info:
        ckpt.state.criterion = lambda x: x  # a function would need pickle
    assert "ckpt.state.criterion" in str(info.value)
    assert "state_dict()/load_state_dict()" in str(info.value)
    assert "criterion" not in ckpt.state

    ckpt.state.history = [1.0]
    ckpt.state.history.append(object())  # slipped in after the assignment: refused at step()
    with pytest.raises(UnsupportedStateError, match=r"ckpt.state.history\[1\]: a object"):
        train_steps(ckpt, model, opt, 1)


def test_an_empty_extras_dict_is_the_very_dict_saved_and_restored(ckdir: Path) -> None:
    extras: dict[str, Any] = {}
    ckpt, model, opt = _run(ckdir, extras=extras)
    extras["epochs_done"] = 3  # filled after the Checkpointer was made
    extras["ema"] = torch.full((2,), 0.5)
    train_steps(ckpt, model, opt, 1)
    ckpt.close()
    restored: dict[str, Any] = {}
    again, _, _ = _run(ckdir, extras=restored)
    again.restore()
    assert restored["epochs_done"] == 3 and torch.equal(restored["ema"], torch.full((2,), 0.5))


def test_a_state_saved_for_an_object_that_does_not_load_it_is_a_mismatch(ckdir: Path) -> None:
    from spotrun import CheckpointMismatchError

    ckpt, model, opt = _run(ckdir)
    ckpt.state.counter = Counter()
    train_steps(ckpt, model, opt, 1)
    ckpt.close()
    again, _, _ = _run(ckdir)
    again.state.counter = torch.nn.Linear(2, 2)  # load_state_dict refuses {"calls": 0}
    with pytest.raises(CheckpointMismatchError, match="its state counter"):
        again.restore()


def test_values_changed_after_the_last_step_wait_for_the_next_checkpoint(ckdir: Path) -> None:
    """An exception after ckpt.step() (end-of-epoch work) saves the state of that step."""
    ckpt, model, opt = _run(ckdir)
    ckpt.state.lr = 20.0
    with pytest.raises(RuntimeError, match="evaluation failed"), ckpt:
        train_steps(ckpt, model, opt, 2)
        ckpt.state.lr /= 4  # the annealing of the evaluation that then fails
        raise RuntimeError("evaluation failed")
    again, _, _ = _run(ckdir)
    again.state.lr = 20.0
    assert again.restore() == 2 and again.state.lr == 20.0
