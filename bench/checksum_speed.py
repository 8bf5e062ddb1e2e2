"""Checksum throughput: CRC32C (``crc32c``, what spotrun uses) vs sha256 vs ``google_crc32c``.

Run it with ``make bench`` (or ``.venv/bin/python bench/checksum_speed.py [--mib 256]``).
Hashes one 256 MiB buffer of random bytes already in memory; prints GB/s, median of 5 runs,
and each one's speed relative to sha256. This picked CRC32C for the checkpoint manifest
(trainer/spotrun/checksum.py): S3 can verify the same value server-side.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import time
import zlib
from collections.abc import Callable

import crc32c

Hasher = Callable[[bytes], object]


def candidates() -> dict[str, Hasher]:
    found: dict[str, Hasher] = {
        f"crc32c {crc32c.__version__} (hardware={crc32c.hardware_based}) [spotrun]": (
            lambda data: crc32c.crc32c(data)
        ),
        "hashlib.sha256": lambda data: hashlib.sha256(data).digest(),
        "zlib.crc32 (not CRC32C; for scale)": lambda data: zlib.crc32(data),
    }
    try:
        import google_crc32c

        found[f"google_crc32c ({google_crc32c.implementation})"] = lambda data: google_crc32c.value(
            data
        )
    except ImportError:
        print("google_crc32c is not installed; skipped")
    return found


def measure(fn: Hasher, data: bytes, runs: int) -> float:
    fn(data[: 1 << 20])  # warm: imports, tables
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        fn(data)
        seconds.append(time.perf_counter() - started)
    return len(data) / statistics.median(seconds) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="buffer size in MiB")
    parser.add_argument("--runs", type=int, default=5, help="runs per checksum (median)")
    args = parser.parse_args()
    data = os.urandom(args.mib << 20)  # bytes: google_crc32c takes no memoryview
    speeds = {name: measure(fn, data, args.runs) for name, fn in candidates().items()}
    sha = speeds["hashlib.sha256"]
    width = max(len(n) for n in speeds)
    print(f"Checksums of {args.mib} MiB in memory, median of {args.runs}:\n")
    print(f"| {'checksum'.ljust(width)} | GB/s  | vs sha256 |")
    print(f"|{'-' * (width + 2)}|-------|-----------|")
    for name, speed in speeds.items():
        print(f"| {name.ljust(width)} | {speed:5.2f} | {speed / sha:8.1f}x |")


if __name__ == "__main__":
    main()
