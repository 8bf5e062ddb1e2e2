"""Spot capacity traces: SkyPilot's public JSON format, read and validated.

One file is one zone's series: ``{"metadata": {"gap_seconds": g}, "data": [c0, c1, ...]}``,
``c`` the spot capacity during tick ``i`` (``[i*g, (i+1)*g)``): 0 = none, 1 (or any count
above 0) = a node can be had. A multi-zone trace is several such files with the same
``gap_seconds`` and length, one per zone (the zone is named after the file).
Everything read is checked: a bad file raises ``TraceError`` naming the file, the cause
and the fix. Pure apart from ``load``/``save``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_BYTES = 16 * 2**20  # a year of 10 s ticks is ~3 MB: more is no trace
MAX_TICKS = 10**6
MAX_COUNT = 10**6


class TraceError(ValueError):
    """A trace file that cannot be used; the message names the file, the cause and the fix."""


@dataclass(frozen=True)
class Trace:
    """Per-zone capacity series sharing one tick length (seconds)."""

    gap_seconds: float
    zones: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def ticks(self) -> int:
        return len(self.zones[0][1])

    @property
    def seconds(self) -> float:
        return self.ticks * self.gap_seconds

    def up(self, zone: int, tick: int) -> bool:
        return self.zones[zone][1][tick] > 0


def _fail(source: str, cause: str, fix: str) -> TraceError:
    return TraceError(f"trace {source}: {cause}; {fix}")


FORMAT = 'expected {"metadata": {"gap_seconds": <seconds>}, "data": [<capacity per tick>, ...]}'


def parse(text: str, source: str) -> tuple[float, tuple[int, ...]]:
    """``(gap_seconds, counts)`` of one zone's trace text; ``source`` names it in errors."""
    if len(text) > MAX_BYTES:
        raise _fail(source, f"{len(text)} bytes, more than {MAX_BYTES}", "use a shorter trace")
    try:
        doc: Any = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise _fail(source, f"not JSON ({err})", FORMAT) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
        raise _fail(source, "no 'metadata' object", FORMAT)
    gap = doc["metadata"].get("gap_seconds")
    if isinstance(gap, bool) or not isinstance(gap, int | float) or not (
        math.isfinite(gap) and gap > 0
    ):
        raise _fail(source, f"metadata.gap_seconds is {gap!r}, not a positive number",
                    "set it to the tick length in seconds, e.g. 600")
    data = doc.get("data")
    if not isinstance(data, list) or not data:
        raise _fail(source, "'data' is missing or empty", FORMAT)
    if len(data) > MAX_TICKS:
        raise _fail(source, f"{len(data)} ticks, more than {MAX_TICKS}", "use a shorter trace")
    counts = []
    for i, c in enumerate(data):
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= MAX_COUNT:
            raise _fail(source, f"data[{i}] is {c!r}, not a capacity count in 0..{MAX_COUNT}",
                        "write 0 (no spot capacity) or 1 (capacity) per tick")
        counts.append(c)
    return float(gap), tuple(counts)


def combine(series: list[tuple[str, float, tuple[int, ...]]]) -> Trace:
    """One trace from per-zone series ``(name, gap_seconds, counts)``; they must agree."""
    if not series:
        raise TraceError("trace: no file given; name one trace file per zone")
    name0, gap0, counts0 = series[0]
    for name, gap, counts in series[1:]:
        if gap != gap0:
            raise _fail(name, f"gap_seconds {gap:g} differs from {name0}'s {gap0:g}",
                        "give the zones of one trace the same tick length")
        if len(counts) != len(counts0):
            raise _fail(name, f"{len(counts)} ticks, {name0} has {len(counts0)}",
                        "give the zones of one trace the same length")
    names = [n for n, _, _ in series]
    if len(set(names)) != len(names):
        raise TraceError(f"trace: zone names repeat ({', '.join(names)}); "
                         "name each zone's file differently")
    return Trace(gap0, tuple((n, c) for n, _, c in series))


def load(*paths: Path) -> Trace:
    """A trace from one file per zone (each zone named after its file's stem)."""
    series = []
    for path in paths:
        try:
            size = path.stat().st_size
            if size > MAX_BYTES:
                raise _fail(str(path), f"{size} bytes, more than {MAX_BYTES}",
                            "use a shorter trace")
            text = path.read_text()
        except OSError as err:
            raise _fail(str(path), f"cannot be read ({err.strerror or err})",
                        "give the path of a trace JSON file") from None
        except UnicodeDecodeError:
            raise _fail(str(path), "not UTF-8 text", FORMAT) from None
        gap, counts = parse(text, str(path))
        series.append((str(path), gap, counts))
    checked = combine(series)  # errors name the files
    zones = tuple((Path(source).stem, counts) for source, counts in checked.zones)
    stems = [name for name, _ in zones]
    if len(set(stems)) != len(stems):
        raise TraceError(f"trace: zone names repeat ({', '.join(stems)}); "
                         "name each zone's file differently")
    return Trace(checked.gap_seconds, zones)


def dumps(gap_seconds: float, counts: tuple[int, ...] | list[int]) -> str:
    """One zone's series in SkyPilot's format (what ``parse`` reads back)."""
    gap: float | int = int(gap_seconds) if float(gap_seconds).is_integer() else gap_seconds
    return json.dumps({"metadata": {"gap_seconds": gap}, "data": list(counts)}) + "\n"


def runs(counts: tuple[int, ...]) -> list[tuple[int, int, bool]]:
    """Maximal runs ``(first tick, end tick, up)`` of one zone's series (pure)."""
    out: list[tuple[int, int, bool]] = []
    start = 0
    for i in range(1, len(counts) + 1):
        if i == len(counts) or (counts[i] > 0) != (counts[start] > 0):
            out.append((start, i, counts[start] > 0))
            start = i
    return out
