"""``make bench-goodput``: replay a spot trace, notice used vs save at once, and the calculator.

    PYTHONPATH=bench .venv/bin/python -m goodput [--quick] [--runs 3] [--scale 60] [--trace F]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from goodput.calculator import Costs, compress, goodput
from goodput.replay import LANES, REPO, LaneResult, Options, replay
from goodput.trace import Trace, TraceError, load
from goodput.zones import LANES as ZONE_LANES
from goodput.zones import ZoneResult, play_zones

TRACES = REPO / "bench" / "goodput" / "traces"
RESULTS = REPO / "bench" / "GOODPUT_RESULTS.md"
KEPT = "<!-- kept across runs: history and analysis -->"
SCALE = 60.0


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def lane_table(runs: list[list[LaneResult]]) -> str:
    rows = ["| lane | paid goodput | calc | wall goodput | calc | useful steps | calc "
            "| steps redone per preemption | preemptions | restarts | trained into notice (s) "
            "| resume (s) | cost vs on-demand |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: "
            "| ---: |"]
    for lane in LANES:
        rs = [r for run in runs for r in run if r.lane == lane]
        m = [r.measured for r in rs]
        redone = sorted({s for x in m for s in x.steps_redone})
        ratio = rs[0].predicted.spot_price_ratio
        cost = median([ratio / x.paid for x in m if x.paid])
        rows.append(
            f"| {lane} | {median([x.paid for x in m]):.3f} "
            f"| {median([r.predicted.paid for r in rs]):.3f} "
            f"| {median([x.wall for x in m]):.3f} | {median([r.predicted.wall for r in rs]):.3f} "
            f"| {median([x.useful_steps for x in m]):.0f} "
            f"| {median([r.predicted.steps for r in rs]):.0f} "
            f"| {', '.join(map(str, redone)) or '-'} | {rs[0].predicted.preemptions} "
            f"| {median([x.restarts for x in m]):.0f} "
            f"| {median([r.into_notice for r in rs]):.1f} "
            f"| {median([r.resume_seconds for r in rs]):.1f} "
            f"| {cost:.3f} |")
    return "\n".join(rows)


def per_run(runs: list[list[LaneResult]]) -> str:
    lines = ["| run | notice paid | atonce paid | ratio | notice steps | atonce steps "
             "| paid s | elapsed s |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for i, run in enumerate(runs, 1):
        by = {r.lane: r.measured for r in run}
        n, a = by["notice"], by["atonce"]
        share = n.paid / a.paid if a.paid else 0.0
        lines.append(f"| {i} | {n.paid:.3f} | {a.paid:.3f} | {share:.3f} "
                     f"| {n.useful_steps} | {a.useful_steps} | {n.paid_seconds:.0f} "
                     f"| {n.elapsed_seconds:.0f} |")
    return "\n".join(lines)


def zone_table(runs: list[list[ZoneResult]], loads: str) -> str:
    """Per run and lane: wall goodput, the job's preemptions, restarts, steps redone, pauses
    and the pod's zone at each node action."""
    lines = [f"load average (1 / 5 min) at the node actions: {loads}", "",
             "| run | lane | wall goodput | useful steps | preemptions | restarts "
             "| steps redone | pause per restart (s) | the pod's zone at each node action |",
             "| ---: | --- | ---: | ---: | ---: | ---: | --- | --- | --- |"]
    for i, run in enumerate(runs, 1):
        for r in run:
            m = r.measured
            lines.append(f"| {i} | {r.lane} | {m.wall:.3f} | {m.useful_steps} "
                         f"| {r.preemptions} | {m.restarts} "
                         f"| {', '.join(map(str, m.steps_redone)) or '-'} "
                         f"| {', '.join(f'{x:.1f}' for x in r.pauses) or '-'} "
                         f"| {' '.join(r.zones)} |")
    for lane in ZONE_LANES:
        walls = [r.measured.wall for run in runs for r in run if r.lane == lane]
        pre = [float(r.preemptions) for run in runs for r in run if r.lane == lane]
        lines.append(f"| median | {lane} | {median(walls):.3f} | | {median(pre):.0f} | | | | |")
    return "\n".join(lines)


def ratio(runs: list[list[LaneResult]]) -> float:
    out = []
    for run in runs:
        by = {r.lane: r.measured.paid for r in run}
        if by["atonce"]:
            out.append(by["notice"] / by["atonce"])
    return median(out)


def projection(runs: list[list[LaneResult]], notice: float, provision: float) -> str:
    """The calculator on the generated day-long traces at real time, with this run's costs
    but a cloud's notice and node provisioning."""
    r = runs[0][0]
    m = r.measured
    base = Costs(step_seconds=m.step_seconds or 0.1, interval_steps=100,
                 save_seconds=m.save_seconds, upload_seconds=1.0,
                 resume_seconds=r.resume_seconds, provision_seconds=provision,
                 notice_seconds=notice)
    three = load(*sorted(TRACES.glob("day-3zones-*.json")))
    rows = ["| policy | notice | paid goodput | wall goodput | preemptions "
            "| cost vs on-demand |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for policy in ("stay", "move"):
        for use in (True, False):
            g = goodput(three, replace(base, use_notice=use), policy)
            rows.append(f"| {policy} | {'used' if use else 'save at once'} "
                        f"| {g.paid:.4f} | {g.wall:.4f} | {g.preemptions} "
                        f"| {g.cost_vs_on_demand:.3f} |")
    return "\n".join(rows)


def report(args: argparse.Namespace, trace: Trace, runs: list[list[LaneResult]],
           loads: str) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    names = ", ".join(f"`{Path(p).relative_to(REPO)}`" for p in args.trace)
    return f"""# Goodput on a spot trace (`make bench-goodput`)

`bench/goodput` (`PYTHONPATH=bench python -m goodput`), run {when} on {platform.machine()}
with {os.cpu_count()} CPU cores shared with other engineers' tests; load average (1 / 5 min) at
the replay's node actions: {loads}.

**Method.** Trace {names} ({trace.ticks} ticks of {trace.gap_seconds:g} s, played
{args.scale:g}x faster: a trace hour lasts {3600 / args.scale:.0f} s). Its own local control
plane, process node, S3 server and operator. Each run creates two jobs side by side on the
same spot nodes (`bench/goodput/steady_trainer.py`: {args.step_seconds:g} s steps, {args.mb:g}
MB of state, a periodic checkpoint every {args.interval} steps to S3 through the sidecar, warm
start on): **notice** (`SPOTRUN_SAVE_AT_ONCE=0`, trains on through the SIGTERM notice) and
**atonce** (`=1`, saves at the SIGTERM). The bench adds a spot node when the trace's capacity
comes back and preempts it with a {args.notice} s notice (the pods' grace period) so that it
is gone at the tick where capacity goes. {len(runs)} runs; medians over runs.

- **paid goodput** = useful training seconds / paid node seconds. Useful = the step the job
  stands at when the trace ends (steps made twice count once) x the median step time; paid =
  each node from its capacity-up tick to its reclaim (the notice's end), as a cloud bills.
- **wall goodput** = useful / elapsed trace time.
- **steps redone per preemption**: the last step an attempt made minus the step the next one
  restored (values seen over all runs). So that every preemption's successor restores, after
  the trace's end the bench adds capacity if none is left and waits until both jobs train
  again; nothing after the end counts in the other figures.
- **calc**: `goodput.calculator` on the same compressed trace with the costs measured in that
  run (step time, periodic save time, resume = node ready -> first step, provisioning =
  node add call -> Ready; upload {args.upload_seconds:g} s assumed, reserve 4 s as in
  `trainer/spotrun/notice.py`).
- **cost vs on-demand** = spot price ratio ({args.price_ratio:g}) / paid goodput: the spot
  run's cost per useful hour as a share of an on-demand node's.

{lane_table(runs)}

**Using the notice / saving at once, paid goodput: {ratio(runs):.3f}** (median of per-run
ratios; each run measures both lanes side by side).

{per_run(runs)}

## The calculator at real time (a generated day-long 3-zone trace, a cloud's 120 s notice)

Costs: this run's step, save and resume times, 60 s node provisioning, 100-step checkpoint
interval, 1 s upload. `stay`: the job waits for its zone's capacity; `move`: at a reclaim it
moves to another zone with capacity (what zone-aware retry, `spot.avoidReclaimedSeconds`,
aims at). Trace: `bench/goodput/traces/day-3zones-{{a,b,c}}.json` (7 reclaims a day per
zone, 40 min median outage; `stay` uses zone a only).

{projection(runs, 120.0, 60.0)}

Rerun: `make bench-goodput` (full, ~12 min) or `make bench-goodput GOODPUT_ARGS=--quick`
(one short run, ~2 min, does not write this file); zone-aware retry on/off:
`GOODPUT_ARGS=--zones` (~14 min, prints its table; the one below was pasted). The
replayed trace was generated by
`PYTHONPATH=bench .venv/bin/python -m goodput.generate --hours 3 --rate 1 --outage-minutes 15
--seed 19 --out bench/goodput/traces/replay-3h.json`.

"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="replay a spot trace: goodput, notice vs at once")
    p.add_argument("--trace", nargs="+", type=Path, default=None,
                   help="trace JSON file (SkyPilot format; one zone)")
    p.add_argument("--scale", type=float, default=SCALE, help="trace seconds per wall second")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--notice", type=int, default=12, help="interruption notice = grace (s)")
    p.add_argument("--step-seconds", type=float, default=0.1)
    p.add_argument("--interval", type=int, default=20, help="checkpoint every N steps")
    p.add_argument("--mb", type=float, default=1.0, help="trainer state size (MB)")
    p.add_argument("--upload-seconds", type=float, default=0.5,
                   help="the calculator's final upload time (s)")
    p.add_argument("--price-ratio", type=float, default=0.3, help="spot / on-demand price")
    p.add_argument("--quick", action="store_true",
                   help="one run of bench/goodput/traces/quick.json; writes no results file")
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("--zones", action="store_true",
                   help="zone-aware retry on/off on a multi-zone trace (default "
                        "traces/zones-2h-{a,b}.json at --scale 30); prints, writes nothing")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what it started, then exit
    if args.zones:
        args.no_write = True
        args.trace = args.trace or sorted(TRACES.glob("zones-2h-*.json"))
        args.scale = 30.0 if args.scale == SCALE else args.scale
    if args.trace is None:
        args.trace = [TRACES / ("quick.json" if args.quick else "replay-3h.json")]
    if args.quick:
        args.runs, args.no_write = 1, True
    try:
        trace = load(*args.trace)
    except TraceError as err:
        print(err, file=sys.stderr)
        return 2
    from localcluster import config

    state = Path(os.environ.get("SPOTRUN_BENCH_STATE_DIR")
                 or config.cache_dir() / "bench-goodput")
    state.mkdir(parents=True, exist_ok=True)
    opts = Options(notice=args.notice, step_seconds=args.step_seconds,
                   interval_steps=args.interval, mb=args.mb,
                   upload_seconds=args.upload_seconds, spot_price_ratio=args.price_ratio)
    loads: list[str] = []
    if args.zones:
        zone_runs = replay(compress(trace, args.scale), opts, args.runs, state, loads,
                           play_zones)
        print(zone_table(zone_runs, ", ".join(loads)))
        return 0
    runs = replay(compress(trace, args.scale), opts, args.runs, state, loads)
    text = report(args, trace, runs, ", ".join(loads))
    print(text)
    if not args.no_write:
        old = RESULTS.read_text() if RESULTS.exists() else ""
        RESULTS.write_text(text + (old[old.index(KEPT):] if KEPT in old else KEPT + "\n"))
        print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
