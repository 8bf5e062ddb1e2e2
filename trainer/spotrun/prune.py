"""Apply retention to any store: read the manifests, decide (pure), delete manifest-first."""

from __future__ import annotations

from . import retention
from .integrity import read_manifest
from .layout import newest_first, step_dirname
from .manifest import ManifestError
from .store import Store


def entries(store: Store) -> list[retention.Entry]:
    out = []
    for _, name in newest_first(store.names()):
        try:
            m = read_manifest(store, name)
        except (ManifestError, FileNotFoundError):
            continue
        out.append(retention.Entry(m.step, m.metrics, m.writer))
    return out


def prune(store: Store, keep: int, best: retention.KeepBest | None = None) -> list[int]:
    """Delete what retention does not keep; returns the deleted steps."""
    return _delete(store, retention.to_delete(entries(store), keep, best))


def make_room(store: Store, keep: int, best: retention.KeepBest | None = None) -> list[int]:
    """Before a save the disk has no room for: delete down to what retention keeps once the new
    checkpoint lands (see ``retention.to_make_room``); returns the deleted steps."""
    return _delete(store, retention.to_make_room(entries(store), keep, best))


def _delete(store: Store, steps: list[int]) -> list[int]:
    for step in steps:
        store.delete(step_dirname(step))
    return steps
