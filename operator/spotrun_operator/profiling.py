"""A sampling profiler of every thread of the operator, for benchmarks (``SPOTRUN_PROFILE``).

cProfile sees one thread, and the operator's work is spread over the asyncio loop and three
thread pools; so this samples the stacks of all threads (``sys._current_frames``) every
``interval`` seconds and, at exit, writes the counts in the collapsed format that
flame-graph tools read (``thread;outer;...;inner count``), most frequent first. A thread's
name is its pool's (``reconcile``, ``resync``, ``sidecar-poll``) or ``MainThread`` (the loop).

Off unless ``SPOTRUN_PROFILE=<file>`` is set; ``SPOTRUN_PROFILE_INTERVAL`` (default 0.005).
``SPOTRUN_PROFILE_MEMORY=<file>`` traces allocations (``tracemalloc``, slow) and writes where
the memory still held at exit was allocated, largest first.
"""

from __future__ import annotations

import atexit
import re
import sys
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

MAX_DEPTH = 60
WRITE_EVERY = 30.0  # seconds between two writes of the samples so far


def pool_of(thread_name: str) -> str:
    """``reconcile_3`` -> ``reconcile``: samples of one pool's threads count together."""
    return re.sub(r"_\d+$", "", thread_name)


def stack(frame: FrameType | None) -> tuple[str, ...]:
    """``file:function`` from outermost to innermost, at most ``MAX_DEPTH`` innermost."""
    names: list[str] = []
    while frame is not None and len(names) < MAX_DEPTH:
        code = frame.f_code
        names.append(f"{Path(code.co_filename).stem}:{code.co_name}")
        frame = frame.f_back
    return tuple(reversed(names))


def collapsed(samples: Mapping[tuple[str, ...], int]) -> str:
    """One line per distinct stack, ``a;b;c count``, most frequent first."""
    ordered = sorted(samples.items(), key=lambda kv: (-kv[1], kv[0]))
    return "".join(f"{';'.join(s)} {n}\n" for s, n in ordered)


class Sampler:
    def __init__(self, interval: float, out: Path) -> None:
        self.interval, self.out = interval, out
        self.samples: Counter[tuple[str, ...]] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(out,), name="profiler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self, out: Path) -> None:
        me = threading.get_ident()
        written = time.monotonic()
        while not self._stop.wait(self.interval):
            if time.monotonic() - written > WRITE_EVERY:  # readable while the operator runs
                out.write_text(collapsed(self.samples))
                written = time.monotonic()
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident != me:
                    thread = pool_of(names.get(ident, "?"))
                    self.samples[(thread, *stack(frame))] += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.out.write_text(collapsed(self.samples))


def memory_report(snapshot: tracemalloc.Snapshot, limit: int = 40) -> str:
    """The ``limit`` call sites holding most memory in ``snapshot``, with their callers."""
    stats = snapshot.statistics("traceback")
    lines = [f"total {sum(s.size for s in stats) / 2**20:.1f} MiB traced\n"]
    for stat in stats[:limit]:
        lines.append(f"\n{stat.size / 2**20:.2f} MiB in {stat.count} blocks\n")
        lines.extend(f"    {line}\n" for line in stat.traceback.format(most_recent_first=True))
    return "".join(lines)


def _dump_memory(out: Path) -> None:
    out.write_text(memory_report(tracemalloc.take_snapshot()))


def start_from_env(env: Mapping[str, str]) -> Sampler | None:
    """Start sampling when ``SPOTRUN_PROFILE`` names a file, tracing allocations when
    ``SPOTRUN_PROFILE_MEMORY`` does; write them at exit."""
    if memory := env.get("SPOTRUN_PROFILE_MEMORY"):
        tracemalloc.start(6)
        atexit.register(_dump_memory, Path(memory))
    path = env.get("SPOTRUN_PROFILE")
    if not path:
        return None
    sampler = Sampler(float(env.get("SPOTRUN_PROFILE_INTERVAL") or 0.005), Path(path))
    sampler.start()
    atexit.register(sampler.stop)
    print(f"spotrun_operator: sampling stacks into {path} at exit ({time.ctime()})", flush=True)
    return sampler
