"""Buffered vs O_DIRECT checkpoint writes: write time and the slowdown of training steps.

Not part of ``make bench`` (about 2 minutes); run it with
``.venv/bin/python bench/write_modes.py [--reps 5]``. It is the evidence behind the O_DIRECT
suggestion in bench/RESULTS.md: it writes 1 GiB the way trainer/spotrun/writer.py does
(64 MiB chunks, CRC32C of each chunk, then fsync) from a page-aligned, already-touched buffer,
once through the page cache and once with O_DIRECT, (a) with nothing else running and (b) in a
background thread while the training loop of checkpoint_bench.py runs, reporting the median
step time during the write over the median step time without one (paired per repetition).
"""

from __future__ import annotations

import argparse
import mmap
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import crc32c
from checkpoint_bench import Trainer, build, touched_buffer

SIZE = 1 << 30
CHUNK = 64 << 20
MODES = ("buffered", "O_DIRECT")


def write(path: Path, view: memoryview, direct: bool) -> float:
    started = time.perf_counter()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | (os.O_DIRECT if direct else 0)
    fd = os.open(path, flags, 0o644)
    try:
        crc = 0
        for start in range(0, len(view), CHUNK):
            chunk = view[start : start + CHUNK]
            crc = crc32c.crc32c(chunk, crc)
            while chunk:
                chunk = chunk[os.write(fd, chunk) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - started
    path.unlink()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="spotrun-write-modes-", dir=args.dir))
    buffer: mmap.mmap = touched_buffer(SIZE)
    view = memoryview(buffer)
    trainer = Trainer(*build())
    trainer.steps(3)
    idle: dict[str, list[float]] = {m: [] for m in MODES}
    busy: dict[str, list[float]] = {m: [] for m in MODES}
    ratio: dict[str, list[float]] = {m: [] for m in MODES}
    try:
        for _ in range(args.reps):
            for mode in MODES:
                direct = mode == "O_DIRECT"
                idle[mode].append(write(scratch / "idle.bin", view, direct))
                base = trainer.steps(3)
                seconds: list[float] = []
                thread = threading.Thread(
                    target=lambda d=direct, out=seconds: out.append(
                        write(scratch / "busy.bin", view, d)
                    )
                )
                thread.start()
                during = []
                while thread.is_alive():
                    during.append(trainer.step())
                thread.join()
                base += trainer.steps(3)
                busy[mode].append(seconds[0])
                ratio[mode].append(statistics.median(during) / statistics.median(base))
    finally:
        for leftover in scratch.iterdir():
            leftover.unlink()
        scratch.rmdir()
    print(f"1 GiB write+fsync (64 MiB chunks + CRC32C), medians of {args.reps}:\n")
    print("| mode     | idle write | write while training | step time while writing / without |")
    print("|----------|------------|----------------------|-----------------------------------|")
    for mode in MODES:
        print(
            f"| {mode:<8} | {statistics.median(idle[mode]):8.3f} s | "
            f"{statistics.median(busy[mode]):18.3f} s | {statistics.median(ratio[mode]):32.2f}x |"
        )
    for mode in MODES:
        print(
            f"{mode}: idle {[round(x, 2) for x in idle[mode]]}, while training "
            f"{[round(x, 2) for x in busy[mode]]}, step ratios {[round(x, 2) for x in ratio[mode]]}"
        )


if __name__ == "__main__":
    main()
