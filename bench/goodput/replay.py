"""Replay a spot trace through the real operator and trainer on the local cluster.

Its own control plane, process node and S3 server (state in ``$SPOTRUN_BENCH_STATE_DIR``,
default ``~/.cache/spotrun/bench-goodput``; free ports only). Per run, two jobs train side
by side on the same nodes, one per lane: ``notice`` (SPOTRUN_SAVE_AT_ONCE=0: trains on
through the SIGTERM notice) and ``atonce`` (=1: saves at the SIGTERM). The trace, ``scale``
times faster, drives the nodes (``schedule.plan``): a spot node is added when capacity comes
back and preempted with a notice before it goes. Measured per lane from the trainers'
progress logs: useful steps, steps redone, restarts; paid node seconds from the bench's own
bills; the calculator's prediction from the costs measured in the same run beside it.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "hack"), str(REPO / "bench")]

from operator_bench import ARGS, NAMESPACE, PLURAL, operator_running, wait  # noqa: E402
from resume_bench import control_port, load, trainer_events  # noqa: E402

from goodput.calculator import Costs, Goodput, goodput  # noqa: E402
from goodput.measure import Measured, attempts, bills, measure  # noqa: E402
from goodput.schedule import Plan, plan  # noqa: E402
from goodput.trace import Trace  # noqa: E402
from localcluster import procs, s3server  # noqa: E402
from localcluster.node.handle import ProcessNode  # noqa: E402

LANES = {"notice": "0", "atonce": "1"}  # lane -> SPOTRUN_SAVE_AT_ONCE
SECRET = "s3-credentials"
DRAIN_SECONDS = 120.0
# one run: (running, node, s3, trace, opts, run, state) -> (results, loads seen)
Play = Callable[[Any, ProcessNode, Any, Trace, "Options", int, Path], tuple[Any, list[str]]]


@dataclass(frozen=True)
class Options:
    notice: int  # seconds: the interruption notice and the pods' grace period
    step_seconds: float
    interval_steps: int
    mb: float
    upload_seconds: float  # the calculator's upload time (the replay does not measure it)
    spot_price_ratio: float


@dataclass
class Timeline:
    """Wall times of the bench's node actions in one run."""

    adds: list[tuple[float, float]] = field(default_factory=list)  # (call, ready)
    preempts: list[float] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LaneResult:
    lane: str
    measured: Measured
    predicted: Goodput
    resume_seconds: float
    into_notice: float  # median seconds trained after the SIGTERM


def job_body(name: str, s3: Any, port: int, progress: Path, opts: Options,
             save_at_once: str, spot: dict[str, Any] | None = None,
             node_selector: dict[str, str] | None = None) -> dict[str, Any]:
    """The steady trainer as a ResumableTrainingJob with checkpoints in S3; ``spot`` adds to
    its spec.spot, ``node_selector`` keeps it on one lane's nodes."""
    trainer = {
        "name": "trainer",
        "image": "spotrun.dev/process:local",
        "command": ["python", "bench/goodput/steady_trainer.py",
                    "--step-seconds", str(opts.step_seconds), "--mb", str(opts.mb)],
        "env": [{"name": "SPOTRUN_PROGRESS_FILE", "value": str(progress)},
                {"name": "SPOTRUN_SAVE_AT_ONCE", "value": save_at_once}],
    }
    template: dict[str, Any] = {"containers": [trainer]}
    if node_selector:
        template["nodeSelector"] = node_selector
    return {
        "apiVersion": "/".join(ARGS),
        "kind": "ResumableTrainingJob",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": template},
            "checkpoint": {
                "storage": {"uri": f"s3://{s3.bucket}/{name}", "endpoint": s3.endpoint,
                            "secretRef": {"name": SECRET}},
                "sidecarPort": port,
                "intervalSteps": opts.interval_steps,
            },
            "spot": {"maxPreemptions": 1000, **(spot or {})},
            "terminationGracePeriodSeconds": opts.notice,
        },
    }


def add_spot(node: ProcessNode, prefix: str = "spot", zone: str | None = None) -> str:
    """A spot node named by the bench: the process node's own names come back once nodes
    are gone, and one came back while its old Lease was still there (409)."""
    return node.add_node("spot", name=f"{prefix}-{time.monotonic_ns()}", zone=zone)


def drive(node: ProcessNode, todo: Plan, t0: float, end: float) -> tuple[Timeline, str | None]:
    """Play the plan's node actions at their times; the node still alive at the end."""
    timeline = Timeline()
    current: str | None = None
    for action in todo.actions:
        time.sleep(max(0.0, t0 + action.at - time.time()))
        timeline.loads.append(load())
        if action.kind == "add":
            called = time.time()
            current = add_spot(node)
            timeline.adds.append((called, time.time()))
        elif current is not None:
            timeline.preempts.append(time.time())
            node.preempt(current, action.notice)
            current = None
    time.sleep(max(0.0, end - time.time()))
    return timeline, current


def resumes(tries: list[Any], timeline: Timeline) -> list[float]:
    """Per attempt: its node ready -> its first step (s)."""
    out = []
    for a in tries:
        readies = [r for _, r in timeline.adds if a.first_step_at and r <= a.first_step_at]
        if readies:
            out.append(a.first_step_at - readies[-1])
    return out


def into_notice(tries: list[Any], preempts: list[float]) -> list[float]:
    """Per preemption: seconds the attempt running then trained after its SIGTERM."""
    out = []
    for p in preempts:
        for a in tries:
            if a.first_step_at and a.first_step_at <= p <= (a.last_step_at or 0):
                out.append(a.last_step_at - p)
    return out


def play(running: Any, node: ProcessNode, s3: Any, trace: Trace, opts: Options,
         run: int, state: Path) -> tuple[list[LaneResult], list[str]]:
    todo = plan(trace, opts.notice)
    progress = {lane: state / f"progress-{lane}-{run}.jsonl" for lane in LANES}
    ports = procs.free_ports(len(LANES))
    t0 = time.time()
    for (lane, path), port in zip(progress.items(), ports, strict=True):
        path.unlink(missing_ok=True)
        body = job_body(f"{lane}-{run}", s3, port, path, opts, LANES[lane])
        running.custom.create_namespaced_custom_object(*ARGS, NAMESPACE, PLURAL, body)
    end = t0 + trace.seconds
    timeline, alive = drive(node, todo, t0, end)
    paid = bills([a for a, _ in timeline.adds], [t0 + r for r in todo.reclaims], end)
    if alive is None:  # capacity for the drain
        alive = add_spot(node)
    wait_training(list(progress.values()), end)
    results = []
    for lane, path in progress.items():
        runs = trainer_events(path)
        tries = attempts(runs, until=end)
        m = measure(tries, paid, trace.seconds, after=attempts(runs))
        resume = statistics.median(resumes(tries, timeline) or [0.0])
        provision = statistics.median(r - c for c, r in timeline.adds)
        costs = Costs(step_seconds=m.step_seconds or opts.step_seconds,
                      interval_steps=opts.interval_steps, save_seconds=m.save_seconds,
                      upload_seconds=opts.upload_seconds, resume_seconds=resume,
                      provision_seconds=provision, notice_seconds=opts.notice,
                      use_notice=lane == "notice", spot_price_ratio=opts.spot_price_ratio)
        spent = into_notice(tries, timeline.preempts)
        results.append(LaneResult(lane, m, goodput(trace, costs), resume,
                                  statistics.median(spent) if spent else 0.0))
    cleanup(running, node, [f"{lane}-{run}" for lane in LANES], [alive])
    for r in results:
        print(f"run {run} {r.lane}: paid {r.measured.paid:.3f} (calc {r.predicted.paid:.3f}) "
              f"wall {r.measured.wall:.3f} (calc {r.predicted.wall:.3f}) steps "
              f"{r.measured.useful_steps} redone {list(r.measured.steps_redone)}", flush=True)
    return results, timeline.loads


def wait_training(logs: list[Path], end: float) -> None:
    """The drain after the trace's end (nothing measured then counts but steps redone): wait
    until every job trains again, so that each preemption's successor has restored."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline and not all(
        any(e["event"] == "step" and float(e["t"]) > end for run in trainer_events(p) for e in run)
        for p in logs
    ):
        time.sleep(1.0)


def cleanup(running: Any, node: ProcessNode, jobs: list[str], alive: list[str]) -> None:
    for job in jobs:
        running.custom.delete_namespaced_custom_object(*ARGS, NAMESPACE, PLURAL, job)
    for name in alive:
        node.preempt(name, 0)
    wait(lambda: not running.core.list_namespaced_pod(NAMESPACE).items,
         "the replay's pods to end", 180)


def replay(trace: Trace, opts: Options, runs: int, state: Path, loads: list[str],
           one: Play | None = None) -> list[Any]:
    """``runs`` replays of ``trace`` (ticks in wall seconds) by ``one`` (default: ``play``,
    the notice lanes), its lanes side by side."""
    one = one or play
    s3server.stop(state)
    s3 = s3server.start(state)
    out = []
    try:
        with operator_running(state, spot=0) as running:
            node = ProcessNode(control_port(state), state)
            running.core.create_namespaced_secret(NAMESPACE, {
                "metadata": {"name": SECRET},
                "stringData": {"AWS_ACCESS_KEY_ID": s3.access_key,
                               "AWS_SECRET_ACCESS_KEY": s3.secret_key}})
            for run in range(1, runs + 1):
                results, seen = one(running, node, s3, trace, opts, run, state)
                out.append(results)
                loads += seen
    finally:
        s3server.stop(state)
        if left := procs.sweep(state):
            print(f"killed {len(left)} process(es) left with this state dir: {left}")
    return out
