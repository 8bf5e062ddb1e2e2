"""Which checkpoints a save that found the disk full deletes first (pure)."""

from __future__ import annotations

import errno

import pytest

from spotrun.retention import Entry, KeepBest, to_make_room
from spotrun.writer import out_of_space

pytestmark = pytest.mark.unit

ENTRIES = [Entry(s, {"loss": loss}) for s, loss in [(10, 0.5), (20, 0.2), (30, 0.4), (40, 0.3)]]


def test_keeps_one_fewer_than_keep_so_the_new_checkpoint_makes_keep() -> None:
    assert to_make_room(ENTRIES, keep=3) == [10, 20]


def test_never_deletes_the_newest_even_with_keep_1() -> None:
    assert to_make_room(ENTRIES, keep=1) == [10, 20, 30]
    assert to_make_room(ENTRIES[:1], keep=1) == []


def test_never_deletes_the_best() -> None:
    assert to_make_room(ENTRIES, keep=2, best=KeepBest("loss", "min")) == [10, 30]


def test_another_writers_newest_is_not_spared_on_a_full_disk() -> None:
    entries = [Entry(10, {}, "a.1"), Entry(20, {}, "b.2"), Entry(30, {}, "c.3")]
    assert to_make_room(entries, keep=2) == [10, 20]


def test_keep_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="never deleted"):
        to_make_room(ENTRIES, keep=0)


@pytest.mark.parametrize(
    ("error", "full"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
        (OSError(errno.EIO, "Input/output error"), False),
        (ValueError("not an OSError"), False),
    ],
)
def test_only_a_full_device_or_quota_counts_as_out_of_space(
    error: BaseException, full: bool
) -> None:
    assert out_of_space(error) is full
