"""A deadline job on a spot trace: what each placement policy costs and when it finishes
(first order, pure; issue 15 Build 4).

The job needs ``total_steps`` of ``step_seconds`` each between its start (tick 0) and its
deadline. Time runs in ticks of the trace; an attempt pays from its start and trains after
``restart_seconds`` (pod start, restore); a spot attempt ends when its zone's capacity goes
(the notice is used: no step is lost to first order); on-demand is always there at price 1,
spot costs ``spot_price_ratio``. Policies:

- ``on-demand``: on-demand from start to end (the cost every other one is measured against);
- ``greedy``: spot whenever there is capacity, waiting when there is none, until only
  on-demand can still make the deadline: on-demand to the end from then (*Can't Be Late*'s
  greedy baseline, and what a fallback that never comes back amounts to);
- ``uniform``: the operator's own rule, ``spotrun_operator.deadline.choose`` (uniform
  progress, back to spot when ahead).

    PYTHONPATH=bench .venv/bin/python -m goodput.deadline [--traces 100] [--deadline-hours H ...]
    PYTHONPATH=bench .venv/bin/python -m goodput.deadline --trace F --deadline-hours H
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from goodput.generate import Shape, zone_series
from goodput.trace import Trace, load
from spotrun_operator.deadline import Capacity, Progress, choose

POLICIES = ("on-demand", "greedy", "uniform")


@dataclass(frozen=True)
class Job:
    total_steps: int
    step_seconds: float
    deadline_seconds: float
    restart_seconds: float
    spot_price_ratio: float = 0.3
    margin_seconds: float = 0.0


@dataclass(frozen=True)
class Outcome:
    policy: str
    finished: float | None  # seconds from start; None: not within the trace
    cost: float  # node seconds x price
    restarts: int
    spot_seconds: float
    on_demand_seconds: float

    def met_deadline(self, job: Job) -> bool:
        return self.finished is not None and self.finished <= job.deadline_seconds


Decide = Callable[[Progress, "Capacity | None", bool, bool], "Capacity | None"]


def _on_demand(p: Progress, running: Capacity | None, spot_up: bool, sticky: bool) -> Capacity:
    return "on-demand"


def _greedy(p: Progress, running: Capacity | None, spot_up: bool, sticky: bool) -> (
    Capacity | None
):
    if sticky or running == "on-demand" or p.slack() <= p.margin_seconds:
        return "on-demand"
    return "spot" if spot_up else None


def _uniform(p: Progress, running: Capacity | None, spot_up: bool, sticky: bool) -> (
    Capacity | None
):
    wanted = choose(p, running, spot_short=not spot_up).capacity
    return wanted if wanted == "on-demand" or spot_up else None


DECIDE: dict[str, Decide] = {"on-demand": _on_demand, "greedy": _greedy, "uniform": _uniform}


def simulate(job: Job, up: list[bool], gap_seconds: float, policy: str) -> Outcome:
    """One run of ``policy`` over the capacity series ``up`` (one bool a tick)."""
    decide = DECIDE[policy]
    work = job.total_steps * job.step_seconds
    done = cost = spot_s = od_s = 0.0
    running: Capacity | None = None
    restart_left, restarts, went_on_demand = 0.0, 0, False
    for tick, spot_up in enumerate(up):
        now = tick * gap_seconds
        if running == "spot" and not spot_up:
            running = None  # reclaimed
        progress = Progress(now=now, start=0.0, deadline=job.deadline_seconds,
                            total_steps=job.total_steps,
                            done_steps=int(done / job.step_seconds + 1e-9),
                            step_seconds=job.step_seconds, restart_seconds=job.restart_seconds,
                            margin_seconds=job.margin_seconds)
        wanted = decide(progress, running, spot_up, went_on_demand)
        if wanted != running:
            running, restarts = wanted, restarts + (wanted is not None)
            restart_left = job.restart_seconds if wanted is not None else 0.0
            went_on_demand = went_on_demand or (policy == "greedy" and wanted == "on-demand")
        if running is None:
            continue
        busy = min(gap_seconds, restart_left)
        trained = min(gap_seconds - busy, work - done)
        restart_left -= busy
        paid = busy + trained
        cost += paid * (job.spot_price_ratio if running == "spot" else 1.0)
        if running == "spot":
            spot_s += paid
        else:
            od_s += paid
        done += trained
        if done >= work - 1e-9:
            return Outcome(policy, now + paid, cost, restarts, spot_s, od_s)
    return Outcome(policy, None, cost, restarts, spot_s, od_s)


def outage_trace(hours: float, seed: int, gap_seconds: float = 300.0) -> list[bool]:
    """A trace with long spot outages (median 2 h, ~7 reclaims a day of uptime)."""
    shape = Shape(hours=hours, gap_seconds=gap_seconds, outage_median_minutes=120.0,
                  outage_sigma=0.6)
    return [c > 0 for c in zone_series(shape, seed)]


def table(job: Job, outcomes: list[Outcome]) -> str:
    base = next(o.cost for o in outcomes if o.policy == "on-demand")
    rows = ["| policy | finished (h) | deadline met | cost vs on-demand | restarts "
            "| spot h | on-demand h |", "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for o in outcomes:
        done = f"{o.finished / 3600:.2f}" if o.finished is not None else "not in the trace"
        rows.append(f"| {o.policy} | {done} | {'yes' if o.met_deadline(job) else 'NO'} "
                    f"| {o.cost / base:.3f} | {o.restarts} | {o.spot_seconds / 3600:.2f} "
                    f"| {o.on_demand_seconds / 3600:.2f} |")
    return "\n".join(rows)


@dataclass(frozen=True)
class Sweep:
    deadline_hours: float
    mean: dict[str, float]  # cost against on-demand, by policy
    median: dict[str, float]
    misses: dict[str, int]
    uniform_cheaper: int  # traces where uniform cost less than greedy
    traces: int


def sweep(work_hours: float, deadline_hours: float, seeds: range,
          restart_seconds: float = 180.0, gap_seconds: float = 300.0) -> Sweep:
    """Every policy on ``len(seeds)`` generated outage traces (pure)."""
    job = Job(total_steps=round(work_hours * 3600), step_seconds=1.0,
              deadline_seconds=deadline_hours * 3600, restart_seconds=restart_seconds,
              margin_seconds=gap_seconds)  # one decision a tick: keep a tick in hand
    costs: dict[str, list[float]] = {p: [] for p in POLICIES}
    misses = dict.fromkeys(POLICIES, 0)
    cheaper = 0
    for seed in seeds:
        up = outage_trace(deadline_hours * 2, seed, gap_seconds)
        runs = {p: simulate(job, up, gap_seconds, p) for p in POLICIES}
        for p, o in runs.items():
            costs[p].append(o.cost / runs["on-demand"].cost)
            misses[p] += not o.met_deadline(job)
        cheaper += runs["uniform"].cost < runs["greedy"].cost - 1e-9
    return Sweep(deadline_hours, {p: statistics.mean(v) for p, v in costs.items()},
                 {p: statistics.median(v) for p, v in costs.items()}, misses, cheaper,
                 len(seeds))


def sweep_table(rows: list[Sweep], work_hours: float) -> str:
    out = [f"| deadline (work {work_hours:g} h) | "
           + " | ".join(f"{p}: mean / median cost, misses" for p in POLICIES)
           + " | uniform cheaper than greedy |",
           "| --- |" + " --- |" * (len(POLICIES) + 1)]
    for r in rows:
        cells = [f"{r.mean[p]:.3f} / {r.median[p]:.3f}, {r.misses[p]}" for p in POLICIES]
        out.append(f"| {r.deadline_hours:g} h | " + " | ".join(cells)
                   + f" | {r.uniform_cheaper} of {r.traces} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    a = argparse.ArgumentParser(description="deadline policies on spot traces (first order)")
    a.add_argument("--trace", type=Path, help="one one-zone trace instead of the sweep")
    a.add_argument("--work-hours", type=float, default=10.0)
    a.add_argument("--deadline-hours", type=float, nargs="+", default=[12.0, 14.0, 16.0, 20.0])
    a.add_argument("--traces", type=int, default=100, help="generated traces a deadline")
    a.add_argument("--restart-seconds", type=float, default=180.0)
    args = a.parse_args(argv)
    if args.trace:
        trace: Trace = load(args.trace)
        up = [trace.up(0, t) for t in range(trace.ticks)]
        job = Job(total_steps=round(args.work_hours * 3600), step_seconds=1.0,
                  deadline_seconds=args.deadline_hours[0] * 3600,
                  restart_seconds=args.restart_seconds, margin_seconds=trace.gap_seconds)
        print(table(job, [simulate(job, up, trace.gap_seconds, p) for p in POLICIES]))
        return 0
    rows = [sweep(args.work_hours, d, range(args.traces), args.restart_seconds)
            for d in args.deadline_hours]
    print(sweep_table(rows, args.work_hours))
    return 0


if __name__ == "__main__":
    sys.exit(main())
