"""Zone-aware retry on a multi-zone trace: the replay with and without it, side by side.

Each lane has its own nodes (a label the job's nodeSelector names), driven by the same
trace (``schedule.zone_plan``: a zone's node count follows its series; a reclaim takes the
nodes one tick apart, the lane's own job's node first). Lanes: ``retry``
(``spec.spot.avoidReclaimedSeconds`` at its default: the next attempt prefers a zone other
than the one just reclaimed) and ``noretry`` (``avoidReclaimedSeconds: 0``). Both use the
notice.

So that the comparison measures the preference, not the scheduler's coin (``schedule.opening``):
only the zone reclaimed first has nodes when the jobs are made, so both first pods land there;
the other zones' nodes join once both are bound, each already half full with a filler pod
(``FILLER``: other workloads' requests), so that the scheduler's own choice, by
NodeResourcesFit's LeastAllocated score, is the reclaimed zone's emptier survivors. The
retry lane's preferred ``NotIn`` term (NodeAffinity, weight 2, normalised to 100 on the nodes
outside the zone) outweighs that (at most 100, weight 1). Measured: wall-clock goodput
(useful / elapsed), the job's preemptions (its status), restarts and steps redone, and the
zone of each lane's pod at every node action. Paid goodput is not compared here: a lane's
nodes are a pool it keeps up whether the job uses them or not.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from operator_bench import ARGS, NAMESPACE, PLURAL, wait
from resume_bench import load, trainer_events

from goodput.measure import Measured, attempts, measure, pauses
from goodput.replay import (  # sets sys.path
    Options,
    add_spot,
    cleanup,
    job_body,
    wait_training,
)
from goodput.schedule import ZoneAction, opening, zone_plan
from goodput.trace import Trace
from localcluster import procs
from localcluster.node.handle import ProcessNode, ProcessNodeError
from localcluster.node.nodes import SPOT_TAINT

LANES: dict[str, dict[str, Any]] = {"retry": {}, "noretry": {"avoidReclaimedSeconds": 0}}
LABEL = "bench.spotrun.dev/lane"
# Half of a process node (8 CPU, 32 GiB): LeastAllocated scores a node so loaded ~48 for the
# trainer pod (its containers count the scheduler's non-zero defaults, 100m / 200 MB, as they
# request nothing) against ~98 for an empty one.
FILLER = {"cpu": "4", "memory": "16Gi"}


@dataclass(frozen=True)
class ZoneResult:
    lane: str
    measured: Measured
    preemptions: int  # the job's status.preemptions at the trace's end
    zones: tuple[str, ...]  # the zone of the job's pod at each node action ("-": none bound)
    pauses: tuple[float, ...]  # per restart: seconds between two attempts' steps


def filler(name: str, node: str) -> dict[str, Any]:
    """Another workload's pod, bound to ``node``, requesting ``FILLER`` (pure)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench-filler"}},
        "spec": {
            "nodeName": node,
            "tolerations": [{"key": SPOT_TAINT["key"], "operator": "Exists"}],
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "filler", "image": "spotrun.dev/process:local",
                            "command": ["sleep", "100000"],
                            "resources": {"requests": dict(FILLER)}}],
        },
    }


def short_names(zones: list[str]) -> dict[str, str]:
    """Each zone's name without the prefix all share up to its last separator
    (``zones-2h-a`` -> ``a``, ``zone-10`` -> ``10``), whole where that would leave nothing
    (pure)."""
    prefix = os.path.commonprefix(zones) if len(zones) > 1 else ""
    cut = max((prefix.rfind(sep) + 1 for sep in "-_./"), default=0)
    return {z: z[cut:] or z for z in zones}


def hosts(core: Any, job: str) -> set[str]:
    """Nodes the job's live pods are bound to."""
    out = set()
    for pod in core.list_namespaced_pod(NAMESPACE).items:
        if pod.metadata.name.startswith(f"{job}-") and pod.spec.node_name \
                and pod.status.phase not in ("Succeeded", "Failed"):
            out.add(pod.spec.node_name)
    return out


def add(node: ProcessNode, core: Any, zone: str, lane: str, busy: bool) -> str:
    name = add_spot(node, f"spot-{lane}", zone)
    core.patch_node(name, {"metadata": {"labels": {LABEL: lane}}})
    if busy:
        core.create_namespaced_pod(NAMESPACE, filler(f"filler-{name}", name))
    return name


class Lanes:
    """Each lane's nodes per zone, played from the plan's actions."""

    def __init__(self, node: ProcessNode, core: Any, trace: Trace, jobs: dict[str, str],
                 quiet: str) -> None:
        self.node, self.core, self.jobs, self.quiet = node, core, jobs, quiet
        self.pools = {lane: {z: list[str]() for z, _ in trace.zones} for lane in LANES}
        self.seen: dict[str, list[str]] = {lane: [] for lane in LANES}
        self.short = short_names([z for z, _ in trace.zones])

    def where(self, lane: str) -> str:
        busy = hosts(self.core, self.jobs[lane])
        return ",".join(sorted(self.short[z] for z, pool in self.pools[lane].items()
                               if busy & set(pool))) or "-"

    def act(self, action: ZoneAction, run: int) -> None:
        for lane in LANES:
            self.seen[lane].append(self.where(lane))
            pool = self.pools[lane][action.zone]
            if action.kind == "add":
                pool.append(add(self.node, self.core, action.zone, lane,
                                action.zone != self.quiet))
                continue
            busy = hosts(self.core, self.jobs[lane])
            victim = next((n for n in pool if n in busy), pool[-1])
            pool.remove(victim)
            try:
                self.node.preempt(victim, action.notice)
            except ProcessNodeError as err:  # gone already: the reclaim it stood for is done
                print(f"run {run} {lane}: {err}", flush=True)

    def alive(self) -> list[str]:
        return [n for lane in LANES for pool in self.pools[lane].values() for n in pool]


def play_zones(running: Any, node: ProcessNode, s3: Any, trace: Trace, opts: Options,
               run: int, state: Path) -> tuple[list[ZoneResult], list[str]]:
    core, custom = running.core, running.custom
    first, joining, rest = opening(zone_plan(trace, opts.notice))
    progress = {lane: state / f"progress-{lane}-{run}.jsonl" for lane in LANES}
    jobs = {lane: f"{lane}-{run}" for lane in LANES}
    lanes = Lanes(node, core, trace, jobs, quiet=first[0].zone)
    for action in first:
        lanes.act(action, run)
    lanes.seen = {lane: [] for lane in LANES}  # before the jobs: nothing to see
    t0 = time.time()
    for (lane, path), port in zip(progress.items(), procs.free_ports(len(LANES)), strict=True):
        path.unlink(missing_ok=True)
        body = job_body(jobs[lane], s3, port, path, opts, "0", LANES[lane], {LABEL: lane})
        custom.create_namespaced_custom_object(*ARGS, NAMESPACE, PLURAL, body)
    wait(lambda: all(hosts(core, job) for job in jobs.values()), "both first pods bound", 120)
    loads: list[str] = []
    for action in (*joining, *rest):
        time.sleep(max(0.0, t0 + action.at - time.time()))
        loads.append(load())
        lanes.act(action, run)
    end = t0 + trace.seconds
    time.sleep(max(0.0, end - time.time()))
    preemptions = {lane: int((custom.get_namespaced_custom_object(
        *ARGS, NAMESPACE, PLURAL, jobs[lane]).get("status") or {}).get("preemptions") or 0)
        for lane in LANES}
    for lane in LANES:  # capacity for the drain
        if not any(lanes.pools[lane].values()):
            lanes.pools[lane][trace.zones[0][0]].append(
                add(node, core, trace.zones[0][0], lane, False))
    wait_training(list(progress.values()), end)
    results = []
    for lane, path in progress.items():
        runs = trainer_events(path)
        m = measure(attempts(runs, until=end), 0.0, trace.seconds, after=attempts(runs))
        stood = pauses(attempts(runs, until=end))  # the drain's restart is no preemption's
        results.append(ZoneResult(lane, m, preemptions[lane], tuple(lanes.seen[lane]), stood))
        print(f"run {run} {lane}: wall {m.wall:.3f} steps {m.useful_steps} preemptions "
              f"{preemptions[lane]} restarts {m.restarts} redone {list(m.steps_redone)} "
              f"pauses {[round(x, 1) for x in stood]} "
              f"zones {' '.join(lanes.seen[lane])}", flush=True)
    core.delete_collection_namespaced_pod(NAMESPACE, label_selector="app=bench-filler",
                                          grace_period_seconds=0)
    cleanup(running, node, list(jobs.values()), lanes.alive())
    return results, loads
