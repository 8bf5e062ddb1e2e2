"""A save on a full disk: delete older checkpoints early (as retention would) and retry once.

Retention normally runs after a save. On a disk with room for exactly ``keep`` checkpoints the
save that would make ``keep + 1`` never fits, so retention would never run. When a save fails
with ENOSPC/EDQUOT, the temp folders of dead writers and the checkpoints retention would drop
once the new one lands are deleted, and the save is tried once more. After that the disk has
proven tight: later saves delete first, rather than fill the disk and fail again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from .localstore import LocalStore
from .prune import make_room
from .retention import KeepBest
from .stale import remove_stale_tmp
from .writer import out_of_space

log = logging.getLogger("spotrun")


class RoomKeeper:
    """Wraps the writes of one store; remembers whether its disk proved too small."""

    def __init__(self, store: LocalStore, keep: int, best: KeepBest | None) -> None:
        self.store, self.keep, self.best = store, keep, best
        self.tight = False  # a save found no room: delete before each later save

    def write(self, step: int, write: Callable[[], Path]) -> Path:
        """``write()`` the checkpoint of ``step``, making room first or after ENOSPC/EDQUOT."""
        if self.tight:
            make_room(self.store, self.keep, self.best)
        try:
            return write()
        except OSError as e:
            if not out_of_space(e):
                raise
            freed = remove_stale_tmp(self.store.dir) + [
                f"step {s}" for s in make_room(self.store, self.keep, self.best)
            ]
            if not freed:
                log.error(
                    "spotrun: %s while saving step %d in %s, and nothing there may be deleted "
                    "(keep=%d keeps the newest and the best); free space or give the volume "
                    "room for one more checkpoint",
                    e.strerror,
                    step,
                    self.store.dir,
                    self.keep,
                )
                raise
            self.tight = True
            log.warning(
                "spotrun: %s while saving step %d in %s: deleted %s early (keep=%d counts the "
                "new one) and retrying; later saves delete old checkpoints before writing",
                e.strerror,
                step,
                self.store.dir,
                ", ".join(freed),
                self.keep,
            )
            return write()
