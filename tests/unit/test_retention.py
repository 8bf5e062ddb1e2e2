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
