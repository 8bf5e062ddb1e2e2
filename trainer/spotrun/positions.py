"""Resumable positions of hand-written loops: ``ckpt.range`` and ``ckpt.iterate``.

    for epoch in ckpt.range(1, epochs + 1):
        for i in ckpt.range(0, len(data) - 1, bptt):
            ...  # forward, backward, update
            ckpt.step()

When is an item completed? At each ``ckpt.step()``, the item of the innermost loop running
is completed (call ``step()`` once per item, as the last thing its body does); the items of
the loops around it are in progress. A restore continues each loop there: the innermost
with the item after the completed one, the outer ones with the item in progress, where the
inner loop picks up its saved position once, in the item being resumed (in the next items
it starts from its beginning again). When a ``ResumableLoader`` is iterating inside the
innermost loop, the loader holds the position inside the item, and the item is in progress.

Loops are told apart by ``name``, by default the file and line of the call, so an edited
script resumes its loops only when they keep their line (or pass ``name=``).
``ckpt.iterate`` skips the items consumed before, so the iterable must yield the same items
in the same order on every run (seeded, not shuffled by an unsaved generator).
"""

from __future__ import annotations

import builtins
import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
KINDS = ("range", "iterate")
MAX_DEPTH = 32


@dataclass(eq=False)
class Record:
    kind: str
    start: int
    step: int
    next: int = 0  # the index of the item to run next (of the item in progress while active)
    done: bool = False
    active: bool = False
    restored: bool = False  # from a checkpoint, not yet taken up by its loop
    children: dict[str, Record] = field(default_factory=dict)


class Positions:
    """Every loop's record, as a tree: a loop's children belong to its item in progress."""

    def __init__(self) -> None:
        self._root: dict[str, Record] = {}
        self._active: list[Record] = []  # outermost first

    def range(self, start: int, stop: int, step: int, name: str) -> Iterator[int]:
        if step == 0:
            raise ValueError(f"ckpt.range({start}, {stop}, {step}): step must not be zero")
        record = self._enter(name, "range", start, step)
        return self._run(record, iter(builtins.range(start + record.next * step, stop, step)))

    def iterate(self, iterable: Iterable[T], name: str) -> Iterator[T]:
        record = self._enter(name, "iterate", 0, 1)
        if record.done:
            return self._run(record, iter(()))
        return self._run(record, itertools.islice(iter(iterable), record.next, None))

    def _enter(self, name: str, kind: str, start: int, step: int) -> Record:
        siblings = self._active[-1].children if self._active else self._root
        saved = siblings.get(name)
        if saved is not None and saved.restored:
            if (saved.kind, saved.start, saved.step) != (kind, start, step):
                raise ValueError(
                    f"the loop {name!r} was checkpointed as {_describe(saved)} but now runs as "
                    f"{_describe(Record(kind, start, step))}: keep its start and step (the stop "
                    "may change), give the new loop another name=, or start from an empty "
                    "checkpoint directory"
                )
            saved.restored = False
            return saved
        record = Record(kind, start, step)
        siblings[name] = record
        return record

    def _run(self, record: Record, items: Iterator[T]) -> Iterator[T]:
        self._active.append(record)
        record.active = True
        resumed = True  # the first item keeps the inner loops' restored positions
        try:
            for item in items:
                if not resumed:
                    record.next += 1
                    record.children = {}
                resumed = False
                yield item
            record.next += 0 if resumed else 1
        finally:
            record.active = False
            record.done = True
            record.children = {}
            self._active.remove(record)

    def snapshot(self, inner_position_elsewhere: bool = False) -> dict[str, Any]:
        """The positions at this step boundary (a fresh structure: later steps cannot reach
        it). ``inner_position_elsewhere``: a loader iterating inside the innermost loop."""
        innermost = None if inner_position_elsewhere or not self._active else self._active[-1]
        return _snapshot(self._root, innermost)

    def load(self, saved: Mapping[str, Any]) -> None:
        """Take up positions ``check`` accepted; each loop resumes on its next start."""
        self._root = _load(saved)
        self._active = []


def _snapshot(records: dict[str, Record], innermost: Record | None) -> dict[str, Any]:
    out = {}
    for name, r in records.items():
        completed = r is innermost
        out[name] = {
            "kind": r.kind,
            "start": r.start,
            "step": r.step,
            "next": r.next + 1 if completed else r.next,
            "done": r.done,
            "children": {} if completed else _snapshot(r.children, innermost),
        }
    return out


def _load(saved: Mapping[str, Any]) -> dict[str, Record]:
    return {
        name: Record(
            kind=s["kind"],
            start=s["start"],
            step=s["step"],
            next=s["next"],
            done=s["done"],
            restored=True,
            children=_load(s["children"]),
        )
        for name, s in saved.items()
    }


def check(saved: Any, where: str = "ranges", depth: int = 0) -> None:
    """ValueError (naming the entry) unless ``saved`` is shaped like ``snapshot`` output."""
    if not isinstance(saved, dict):
        raise ValueError(f"{where} is not a mapping")
    if depth > MAX_DEPTH:
        raise ValueError(f"{where} nests loops deeper than {MAX_DEPTH}")
    for name, s in saved.items():
        at = f"{where}[{name!r}]"
        if not isinstance(s, dict) or s.get("kind") not in KINDS:
            raise ValueError(f"{at} is not a loop position")
        for key in ("start", "step", "next"):
            if type(s.get(key)) is not int:
                raise ValueError(f"{at}: {key!r} is not an integer")
        if s["next"] < 0 or s["step"] == 0 or type(s.get("done")) is not bool:
            raise ValueError(f"{at}: a negative position, a zero step or no 'done' flag")
        check(s.get("children"), f"{at}.children", depth + 1)


def _describe(r: Record) -> str:
    return f"range(start={r.start}, step={r.step})" if r.kind == "range" else "iterate()"
