"""ResumableLoader under DDP: each rank its slice of every global batch; the saved position is
global, so a resume at another world size neither skips nor repeats a sample of the epoch."""

from __future__ import annotations

import pytest

from spotrun.sampler import epoch_order, rank_batches, rank_slice

pytestmark = pytest.mark.unit

ORDER = epoch_order(103, seed=7, epoch=2, shuffle=True)


def _steps(position: int, batch: int, world: int, steps: int | None = None) -> list[int]:
    """Every rank's samples of the first ``steps`` steps from ``position``, and the position
    after them."""
    plans = [rank_batches(ORDER, position, batch, world, r, drop_last=False) for r in range(world)]
    taken = plans[0][:steps] if steps is not None else plans[0]
    seen = [i for plan in plans for mine, _ in plan[: len(taken)] for i in mine]
    return seen + [position + sum(size for _, size in taken)]


def test_ranks_split_each_global_batch_without_overlap() -> None:
    plans = [rank_batches(ORDER, 0, 4, 3, r, drop_last=False) for r in range(3)]
    assert [len(p) for p in plans] == [9, 9, 9]  # 103 samples, global batches of 12
    assert plans[1][0] == (ORDER[4:8], 12)
    assert sorted(i for p in plans for b, _ in p for i in b) == list(range(103))
    assert [len(p[-1][0]) for p in plans] == [3, 2, 2]  # the short last one: 7 samples


def test_a_resume_at_another_world_size_continues_at_the_same_sample() -> None:
    """4 ranks take 5 steps and save; 2 ranks (then 3) finish the epoch from that position."""
    *first, position = _steps(0, 4, world=4, steps=5)
    assert position == 80
    *second, position = _steps(position, 4, world=2, steps=1)
    *rest, end = _steps(position, 4, world=3)
    assert end == 103
    assert sorted(first + second + rest) == list(range(103))


def test_drop_last_drops_only_the_short_last_global_batch() -> None:
    plan = rank_batches(ORDER, 0, 4, 3, 0, drop_last=True)
    assert len(plan) == 8 and all(size == 12 for _, size in plan)


def test_a_last_batch_smaller_than_the_world_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="2 samples for 3 ranks.*drop_last=True"):
        rank_batches(list(range(14)), 0, 4, 3, 0, drop_last=False)


def test_rank_slices_tile_a_batch() -> None:
    chunk = list(range(10))
    assert [rank_slice(chunk, 4, r) for r in range(4)] == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
