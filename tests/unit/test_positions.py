"""``ckpt.range`` / ``ckpt.iterate``: a hand-written loop resumes after the last completed item."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from spotrun import Checkpointer, ResumableLoader
from spotrun.components import StateError, check_state
from spotrun.positions import Positions

pytestmark = pytest.mark.unit

Visit = tuple[int, int]
Body = Callable[[Checkpointer, ResumableLoader], Iterator[Visit]]


def _killed_after(ckdir: Path, body: Body, steps: int | None) -> list[Visit]:
    """Run ``body`` (which yields after each ckpt.step()) with a save at every step; stop dead
    after ``steps`` steps as a SIGKILL would (the last save is durable, nothing else runs)."""
    model = torch.nn.Linear(2, 2)
    loader = ResumableLoader(TensorDataset(torch.arange(6)), batch_size=2, seed=1)
    ckpt = Checkpointer(ckdir, model=model, loader=loader, interval_steps=1, handle_signals=False)
    ckpt.restore()
    seen: list[Visit] = []
    for visit in body(ckpt, loader):
        seen.append(visit)
        if steps is not None and len(seen) == steps:
            break
    ckpt.wait()
    return seen


def nested_ranges(ckpt: Checkpointer, _: ResumableLoader) -> Iterator[Visit]:
    for epoch in ckpt.range(3):
        for i in ckpt.range(0, 10, 3):  # 0 3 6 9: restarts each epoch
            ckpt.step()
            yield epoch, i


def generator_inside_a_range(ckpt: Checkpointer, _: ResumableLoader) -> Iterator[Visit]:
    for epoch in ckpt.range(1, 4):
        for item in ckpt.iterate(x * x for x in range(4)):
            ckpt.step()
            yield epoch, item


def loader_inside_a_range(ckpt: Checkpointer, loader: ResumableLoader) -> Iterator[Visit]:
    for epoch in ckpt.range(2):
        for (batch,) in loader:
            ckpt.step()
            yield epoch, int(batch[0])


@pytest.mark.parametrize("body", [nested_ranges, generator_inside_a_range, loader_inside_a_range])
@pytest.mark.parametrize("kill_after", [1, 3, 4, 6])
def test_a_killed_loop_resumes_after_the_last_completed_item(
    tmp_path: Path, body: Body, kill_after: int
) -> None:
    everything = _killed_after(tmp_path / "reference", body, None)
    first = _killed_after(tmp_path / "run", body, kill_after)
    rest = _killed_after(tmp_path / "run", body, None)
    assert first + rest == everything
    assert len(everything) in (12, 6)


def test_an_exception_between_items_resumes_with_the_next_item(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    done: list[int] = []
    with (
        pytest.raises(RuntimeError),
        Checkpointer(tmp_path, model=model, handle_signals=False) as c,
    ):
        for i in c.range(5, name="items"):
            c.step()
            done.append(i)
            if i == 2:
                raise RuntimeError("after the step of item 2")  # an emergency save
    with Checkpointer(tmp_path, model=model, handle_signals=False) as again:
        again.restore()
        assert list(again.range(5, name="items")) == [3, 4]


def test_the_stop_may_grow_but_a_changed_start_is_refused_naming_the_loop(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    with Checkpointer(tmp_path, model=model, handle_signals=False) as ckpt:
        for _ in ckpt.range(0, 4, name="epochs"):
            ckpt.step()
    again = Checkpointer(tmp_path, model=model, handle_signals=False)
    again.restore()
    assert list(again.range(0, 6, name="epochs")) == [4, 5]  # --epochs raised from 4 to 6
    third = Checkpointer(tmp_path, model=model, handle_signals=False)
    third.restore()
    with pytest.raises(ValueError, match="loop 'epochs' was checkpointed as range.start=0"):
        third.range(1, 6, name="epochs")


def test_an_outer_item_is_in_progress_and_an_inner_item_is_completed() -> None:
    positions = Positions()
    outer = positions.range(0, 3, 1, "epochs")
    assert next(outer) == 0
    inner = positions.range(0, 4, 2, "batches")
    assert next(inner) == 0
    snap = positions.snapshot()
    assert snap["epochs"]["next"] == 0 and snap["epochs"]["children"]["batches"]["next"] == 1
    assert (
        positions.snapshot(inner_position_elsewhere=True)["epochs"]["children"]["batches"]["next"]
        == 0
    )


def test_malformed_loop_positions_make_a_checkpoint_invalid() -> None:
    from spotrun import rng

    state = {"model": {}, "progress": {"step": 1}, "rng": rng.capture()}
    bad = {"l": {"kind": "range", "start": 0, "step": 0, "next": 1, "done": False, "children": {}}}
    with pytest.raises(StateError, match="loop positions are malformed.*zero step"):
        check_state(dict(state, ranges=bad), 1)
