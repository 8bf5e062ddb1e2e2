"""Seeded synthetic spot traces (an alternating up/outage process per zone).

Uptimes are drawn with mean ``1 / preemptions_per_hour`` hours (exponential: memoryless
reclaims; lognormal: many short lives and a few long ones, as public traces show), outages
lognormal around ``outage_median_minutes``. Each zone draws on its own stream of the same
seed, so a multi-zone trace is reproducible and its zones are independent.

    python -m goodput.generate --hours 3 --rate 1 --seed 7 --out bench/goodput/traces/x.json
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from goodput.trace import dumps

DISTRIBUTIONS = ("exponential", "lognormal")


@dataclass(frozen=True)
class Shape:
    """What a generated trace looks like."""

    hours: float
    gap_seconds: float = 600.0
    preemptions_per_hour: float = 7 / 24
    uptime: str = "lognormal"
    uptime_sigma: float = 1.0  # lognormal only: spread of log(uptime)
    outage_median_minutes: float = 20.0
    outage_sigma: float = 0.8
    start_up: bool = True
    nodes: int = 1  # spot nodes a zone has while up; a reclaim takes them one tick apart


    def __post_init__(self) -> None:
        if self.uptime not in DISTRIBUTIONS:
            raise ValueError(f"uptime distribution {self.uptime!r}: use one of {DISTRIBUTIONS}")
        for name in ("hours", "gap_seconds", "preemptions_per_hour", "outage_median_minutes"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} is {value!r}: give a positive number")
        if self.nodes < 1:
            raise ValueError(f"nodes is {self.nodes!r}: give at least 1")


def _uptime_s(rng: random.Random, shape: Shape) -> float:
    mean = 3600.0 / shape.preemptions_per_hour
    if shape.uptime == "exponential":
        return rng.expovariate(1.0 / mean)
    # a lognormal whose mean is `mean`: mu = ln(mean) - sigma^2 / 2
    return rng.lognormvariate(math.log(mean) - shape.uptime_sigma**2 / 2, shape.uptime_sigma)


def zone_series(shape: Shape, seed: int, zone: int = 0) -> list[int]:
    """One zone's 0/1 capacity per tick (pure: the same arguments give the same series)."""
    rng = random.Random(f"{seed}/{zone}")
    ticks = max(1, round(shape.hours * 3600 / shape.gap_seconds))
    out: list[int] = []
    up = shape.start_up
    while len(out) < ticks:
        if up:
            seconds = _uptime_s(rng, shape)
        else:
            seconds = rng.lognormvariate(math.log(shape.outage_median_minutes * 60),
                                         shape.outage_sigma)
        out += [int(up)] * max(1, round(seconds / shape.gap_seconds))
        up = not up
    return waves(out[:ticks], shape.nodes)


def waves(series: list[int], nodes: int) -> list[int]:
    """0/1 -> node counts: ``nodes`` while up, and a reclaim as a wave: the last ticks of an
    up run before a 0 step down one node each (3, 3, 2, 1, 0 for 3 nodes), as a cloud
    reclaiming a zone's spot pool does (pure)."""
    out = [c * nodes for c in series]
    for i in range(1, len(out)):
        if series[i] == 0 and series[i - 1] == 1:
            j, left = i - 1, 1
            while j >= 0 and series[j] == 1 and left < nodes and (j == 0 or series[j - 1]):
                out[j] = left
                j, left = j - 1, left + 1
    return out


def generate(shape: Shape, seed: int, zones: int = 1) -> list[list[int]]:
    return [zone_series(shape, seed, z) for z in range(zones)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="write a seeded synthetic spot trace")
    p.add_argument("--hours", type=float, required=True)
    p.add_argument("--gap", type=float, default=600.0, help="tick length (s)")
    p.add_argument("--rate", type=float, default=7 / 24, help="preemptions per hour of uptime")
    p.add_argument("--uptime", choices=DISTRIBUTIONS, default="lognormal")
    p.add_argument("--outage-minutes", type=float, default=20.0, help="median outage")
    p.add_argument("--zones", type=int, default=1)
    p.add_argument("--nodes", type=int, default=1, help="nodes per zone (reclaimed in a wave)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True,
                   help="file (one zone) or stem: <stem>-<zone letter>.json per zone")
    args = p.parse_args(argv)
    shape = Shape(hours=args.hours, gap_seconds=args.gap, preemptions_per_hour=args.rate,
                  uptime=args.uptime, outage_median_minutes=args.outage_minutes, nodes=args.nodes)
    series = generate(shape, args.seed, args.zones)
    if args.zones == 1:
        args.out.write_text(dumps(shape.gap_seconds, series[0]))
        print(args.out)
        return 0
    for z, counts in enumerate(series):
        path = args.out.with_name(f"{args.out.stem}-{'abcdefghij'[z % 10]}{z // 10 or ''}.json")
        path.write_text(dumps(shape.gap_seconds, counts))
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
