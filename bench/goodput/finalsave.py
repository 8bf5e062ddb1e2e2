"""What the final save's upload time does to goodput (issue 15, Build 2 in goodput terms): the
calculator on the generated day-long 3-zone traces at real time, a large state's final save
uploaded in full or as a delta, under a cloud's notices (pure; no cluster).

    PYTHONPATH=bench .venv/bin/python -m goodput.finalsave --full 215 --delta 60 --save 19

A final save whose save + upload does not fit the notice loses the steps since the last
periodic checkpoint (half an interval on average, the calculator's rule); one that fits loses
none, and with the notice used the trainer trains on until save + upload + reserve are left.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from goodput.calculator import POLICIES, Costs, goodput
from goodput.trace import Trace, load

TRACES = Path(__file__).resolve().parent / "traces"


def costs(save: float, resume: float, interval_steps: int, step: float) -> Costs:
    """A large job's costs: its local save and resume times; 60 s node provisioning."""
    return Costs(step_seconds=step, interval_steps=interval_steps, save_seconds=save,
                 upload_seconds=0.0, resume_seconds=resume, provision_seconds=60.0,
                 notice_seconds=120.0)


def table(trace: Trace, base: Costs, uploads: dict[str, float], notices: list[float]) -> str:
    """One row per notice, policy and final upload (``uploads``: name -> seconds)."""
    rows = ["| notice (s) | policy | final upload | save + upload fits | paid goodput "
            "| wall goodput | steps lost | cost vs on-demand |",
            "| ---: | --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for notice in notices:
        for policy in POLICIES:
            for name, seconds in uploads.items():
                c = replace(base, notice_seconds=notice, upload_seconds=seconds)
                g = goodput(trace, c, policy)
                rows.append(f"| {notice:g} | {policy} | {name} ({seconds:g} s) "
                            f"| {'yes' if c.final_save_fits else 'no'} | {g.paid:.4f} "
                            f"| {g.wall:.4f} | {g.steps_lost:.0f} | {g.cost_vs_on_demand:.3f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--full", type=float, required=True, help="the full final upload (s)")
    p.add_argument("--delta", type=float, required=True, help="the delta final upload (s)")
    p.add_argument("--save", type=float, required=True, help="the local final save (s)")
    p.add_argument("--resume", type=float, default=240.0, help="pod start + restore (s)")
    p.add_argument("--step", type=float, default=1.0, help="seconds a step")
    p.add_argument("--interval", type=int, default=600, help="checkpoint every N steps")
    p.add_argument("--notice", type=float, nargs="+", default=[120.0, 30.0])
    args = p.parse_args(argv)
    trace = load(*sorted(TRACES.glob("day-3zones-*.json")))
    base = costs(args.save, args.resume, args.interval, args.step)
    print(table(trace, base, {"full": args.full, "delta": args.delta}, args.notice))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
