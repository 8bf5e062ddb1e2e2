import pytest

from spotrun.retention import Entry, KeepBest, best_entry, to_delete

pytestmark = pytest.mark.unit

ENTRIES = [Entry(s, {"loss": loss}) for s, loss in [(10, 0.5), (20, 0.2), (30, 0.4), (40, 0.3)]]


def test_keeps_the_newest_k() -> None:
    assert to_delete(ENTRIES, keep=2) == [10, 20]


def test_keeps_the_best_by_metric_besides_the_newest() -> None:
    assert to_delete(ENTRIES, keep=1, best=KeepBest("loss", "min")) == [10, 30]
    assert to_delete(ENTRIES, keep=1, best=KeepBest("loss", "max")) == [20, 30]


def test_nan_and_missing_metrics_never_win() -> None:
    entries = [Entry(1, {"acc": float("nan")}), Entry(2, {}), Entry(3, {"acc": 0.1})]
    assert best_entry(entries, KeepBest("acc", "max")) == entries[2]


def test_keep_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="never deleted"):
        to_delete(ENTRIES, keep=0)


def test_the_newest_of_two_overlapping_writers_is_spared() -> None:
    # the attempt still saving on a reclaimed node (newest 40) and its successor (newest 33)
    entries = [Entry(s, {}, "old") for s in (30, 40)] + [Entry(s, {}, "new") for s in (31, 32, 33)]
    assert to_delete(entries, keep=1) == [30, 31, 32]


def test_finished_attempts_do_not_pile_up_one_checkpoint_per_preemption() -> None:
    # five attempts ran one after another, each leaving its newest: keep=2 keeps 2 (+ at most
    # the newest of one overlapping writer), not one per attempt
    entries = [Entry(10 * a + s, {}, f"attempt-{a}") for a in range(5) for s in (1, 2, 3)]
    kept = sorted({e.step for e in entries} - set(to_delete(entries, keep=2)))
    assert kept == [33, 42, 43]  # the old rule kept 3, 13, 23 too
    entries.append(Entry(5, {}, "attempt-9"))  # a stray writer far behind: not spared either
    assert 5 in to_delete(entries, keep=2)
