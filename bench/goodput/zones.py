"""Zone-aware retry on a multi-zone trace: the replay with and without it, side by side.

Each lane has its own nodes (a label the job's nodeSelector names), driven by the same
trace (``schedule.zone_plan``: a zone's node count follows its series; a reclaim takes the
nodes one tick apart, the lane's own job's node first). Lanes: ``retry``
(``spec.spot.avoidReclaimedSeconds`` at its default: the next attempt prefers a zone other
than the one just reclaimed) and ``noretry`` (``avoidReclaimedSeconds: 0``). Both use the
notice. Measured: wall-clock goodput (useful / elapsed), the job's preemptions (its
status), restarts and steps redone. Paid goodput is not compared here: a lane's nodes are
a pool it keeps up whether the job uses them or not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from operator_bench import ARGS, NAMESPACE, PLURAL
from resume_bench import load, trainer_events

from goodput.measure import Measured, attempts, measure
from goodput.replay import (  # sets sys.path
    Options,
    add_spot,
    cleanup,
    job_body,
    wait_training,
)
from goodput.schedule import zone_plan
from goodput.trace import Trace
from localcluster import procs
from localcluster.node.handle import ProcessNode, ProcessNodeError

LANES: dict[str, dict[str, Any]] = {"retry": {}, "noretry": {"avoidReclaimedSeconds": 0}}
LABEL = "bench.spotrun.dev/lane"


@dataclass(frozen=True)
class ZoneResult:
    lane: str
    measured: Measured
    preemptions: int  # the job's status.preemptions at the trace's end


def hosts(core: Any, job: str) -> set[str]:
    """Nodes the job's live pods are bound to."""
    out = set()
    for pod in core.list_namespaced_pod(NAMESPACE).items:
        if pod.metadata.name.startswith(f"{job}-") and pod.spec.node_name \
                and pod.status.phase not in ("Succeeded", "Failed"):
            out.add(pod.spec.node_name)
    return out


def add(node: ProcessNode, core: Any, zone: str, lane: str) -> str:
    name = add_spot(node, f"spot-{lane}", zone)
    core.patch_node(name, {"metadata": {"labels": {LABEL: lane}}})
    return name


def play_zones(running: Any, node: ProcessNode, s3: Any, trace: Trace, opts: Options,
               run: int, state: Path) -> tuple[list[ZoneResult], list[str]]:
    core, custom = running.core, running.custom
    plan = zone_plan(trace, opts.notice)
    progress = {lane: state / f"progress-{lane}-{run}.jsonl" for lane in LANES}
    jobs = {lane: f"{lane}-{run}" for lane in LANES}
    for (lane, path), port in zip(progress.items(), procs.free_ports(len(LANES)), strict=True):
        path.unlink(missing_ok=True)
        body = job_body(jobs[lane], s3, port, path, opts, "0", LANES[lane], {LABEL: lane})
        custom.create_namespaced_custom_object(*ARGS, NAMESPACE, PLURAL, body)
    pools: dict[str, dict[str, list[str]]] = {lane: {z: [] for z, _ in trace.zones}
                                              for lane in LANES}
    loads: list[str] = []
    t0 = time.time()
    for action in plan:
        time.sleep(max(0.0, t0 + action.at - time.time()))
        loads.append(load())
        for lane in LANES:
            pool = pools[lane][action.zone]
            if action.kind == "add":
                pool.append(add(node, core, action.zone, lane))
                continue
            busy = hosts(core, jobs[lane])
            victim = next((n for n in pool if n in busy), pool[-1])
            pool.remove(victim)
            try:
                node.preempt(victim, action.notice)
            except ProcessNodeError as err:  # gone already: the reclaim it stood for is done
                print(f"run {run} {lane}: {err}", flush=True)
    end = t0 + trace.seconds
    time.sleep(max(0.0, end - time.time()))
    preemptions = {lane: int((custom.get_namespaced_custom_object(
        *ARGS, NAMESPACE, PLURAL, jobs[lane]).get("status") or {}).get("preemptions") or 0)
        for lane in LANES}
    for lane in LANES:  # capacity for the drain
        if not any(pools[lane].values()):
            pools[lane][trace.zones[0][0]].append(add(node, core, trace.zones[0][0], lane))
    wait_training(list(progress.values()), end)
    results = []
    for lane, path in progress.items():
        runs = trainer_events(path)
        m = measure(attempts(runs, until=end), 0.0, trace.seconds, after=attempts(runs))
        results.append(ZoneResult(lane, m, preemptions[lane]))
        print(f"run {run} {lane}: wall {m.wall:.3f} steps {m.useful_steps} preemptions "
              f"{preemptions[lane]} restarts {m.restarts} redone {list(m.steps_redone)}",
              flush=True)
    cleanup(running, node, list(jobs.values()),
            [n for lane in LANES for pool in pools[lane].values() for n in pool])
    return results, loads
