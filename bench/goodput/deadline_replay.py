"""A deadline job through the real operator on the local cluster, on a trace with a long spot
outage: three lanes side by side on the same nodes, each a job of the same work.

    PYTHONPATH=bench .venv/bin/python -m goodput.deadline_replay [--runs 1]

- ``uniform``: ``spec.deadline`` (the operator's own rule, ``spotrun_operator.deadlineplan``);
- ``greedy``: spot only; this bench plays the greedy policy: the moment only on-demand can
  still make the deadline (the same arithmetic: one restart plus the remaining steps at the
  trainer's step time, a margin kept), it sets spec.spot.enabled=false and deletes the job's
  current pod, so that every later attempt runs on on-demand to the end;
- ``on-demand``: spec.spot.enabled=false from the start.

The trace (wall seconds): one spot node up from the start, preempted (with a notice) at
``--outage-at``, a spot node back at ``--outage-end``. The cost of a lane is its pods' seconds
from the status (spotSeconds x the spot price ratio + onDemandSeconds), against the on-demand
lane's; it met its deadline when completionTime is before creation + ``--deadline``.
State in ``$SPOTRUN_BENCH_STATE_DIR`` (default ~/.cache/spotrun/bench-deadline).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "hack"), str(REPO / "bench")]

from operator_bench import ARGS, NAMESPACE, PLURAL, operator_running, wait  # noqa: E402
from resume_bench import control_port  # noqa: E402

from localcluster import procs, s3server  # noqa: E402
from localcluster.node.handle import ProcessNode  # noqa: E402

SECRET = "s3-credentials"
LANES = ("uniform", "greedy", "on-demand")


@dataclass(frozen=True)
class Setup:
    total_steps: int
    step_seconds: float
    deadline: int  # seconds after the job's creation
    restart_seconds: int
    margin_seconds: int
    outage_at: float
    outage_end: float
    notice: int
    spot_price_ratio: float


@dataclass(frozen=True)
class LaneResult:
    lane: str
    finished_after: float | None  # seconds from creation to completionTime
    met: bool
    spot_seconds: float
    on_demand_seconds: float
    paid: float  # spot x ratio + on-demand, in on-demand seconds
    preemptions: int


def job_body(name: str, lane: str, s3: Any, port: int, setup: Setup) -> dict[str, Any]:
    trainer = {
        "name": "trainer",
        "image": "spotrun.dev/process:local",
        "command": ["python", "bench/goodput/steady_trainer.py", "--step-seconds",
                    str(setup.step_seconds), "--mb", "1", "--total-steps",
                    str(setup.total_steps)],
    }
    spec: dict[str, Any] = {
        "template": {"spec": {"containers": [trainer]}},
        "checkpoint": {
            "storage": {"uri": f"s3://{s3.bucket}/{name}", "endpoint": s3.endpoint,
                        "secretRef": {"name": SECRET}},
            "sidecarPort": port,
            "intervalSteps": 10,
        },
        "spot": {"maxPreemptions": 1000, "enabled": lane != "on-demand"},
        "terminationGracePeriodSeconds": setup.notice,
    }
    if lane == "uniform":
        spec["deadline"] = {"withinSeconds": setup.deadline, "totalSteps": setup.total_steps,
                            "restartSeconds": setup.restart_seconds,
                            "marginSeconds": setup.margin_seconds}
    return {"apiVersion": "/".join(ARGS), "kind": "ResumableTrainingJob",
            "metadata": {"name": name}, "spec": spec}


def greedy_must(elapsed: float, done: int, setup: Setup) -> bool:
    """Only on-demand can still make it: one restart and the remaining steps leave no more
    than the margin."""
    remaining = max(0, setup.total_steps - done) * setup.step_seconds
    return setup.deadline - elapsed - setup.restart_seconds - remaining <= setup.margin_seconds


def status(running: Any, name: str) -> dict[str, Any]:
    body = running.custom.get_namespaced_custom_object(*ARGS, NAMESPACE, PLURAL, name)
    return dict(body.get("status") or {})


def play_greedy(running: Any, name: str, t0: float, setup: Setup,
                step_seconds: float | None) -> float | None:
    """One check of the greedy lane; the time it went to on-demand when it did now.
    ``step_seconds``: the step time the operator measured (the uniform lane's: the same
    trainer on the same nodes), else the nominal one."""
    st = status(running, name)
    done = int((st.get("lastCheckpoint") or {}).get("step") or 0)
    if st.get("phase") in ("Succeeded", "Failed"):
        return None
    measured = Setup(**{**setup.__dict__, "step_seconds": step_seconds or setup.step_seconds})
    if not greedy_must(time.time() - t0, done, measured):
        return None
    patch = {"spec": {"spot": {"enabled": False}}}
    running.custom.patch_namespaced_custom_object(*ARGS, NAMESPACE, PLURAL, name, patch)
    if pod := st.get("activePod"):
        running.core.delete_namespaced_pod(pod, NAMESPACE)
    return time.time() - t0


def result(lane: str, st: dict[str, Any], created: float, setup: Setup) -> LaneResult:
    done = st.get("completionTime")
    after = (datetime.fromisoformat(done.replace("Z", "+00:00")).timestamp() - created
             if done and st.get("phase") == "Succeeded" else None)
    spot, od = float(st.get("spotSeconds") or 0), float(st.get("onDemandSeconds") or 0)
    return LaneResult(lane, after, after is not None and after <= setup.deadline, spot, od,
                      spot * setup.spot_price_ratio + od, int(st.get("preemptions") or 0))


def play(running: Any, node: ProcessNode, s3: Any, setup: Setup, run: int) -> list[LaneResult]:
    first = node.add_node("spot", name=f"spot-{time.monotonic_ns()}")
    ports = procs.free_ports(len(LANES))
    names = {lane: f"{lane}-{run}" for lane in LANES}
    t0 = time.time()
    for lane, port in zip(LANES, ports, strict=True):
        running.custom.create_namespaced_custom_object(
            *ARGS, NAMESPACE, PLURAL, job_body(names[lane], lane, s3, port, setup))
    created = {lane: time.time() for lane in LANES}
    greedy_at: float | None = None
    spot: str | None = first
    back = False
    limit = t0 + setup.deadline + 300
    while time.time() < limit:
        elapsed = time.time() - t0
        if spot is not None and not back and elapsed >= setup.outage_at:
            node.preempt(spot, setup.notice)
            print(f"{elapsed:.0f}s: spot node {spot} reclaimed (notice {setup.notice}s)",
                  flush=True)
            spot = None
        if spot is None and not back and elapsed >= setup.outage_end:
            spot = node.add_node("spot", name=f"spot-{time.monotonic_ns()}")
            back = True
            print(f"{time.time() - t0:.0f}s: spot node {spot} back", flush=True)
        states = {lane: status(running, names[lane]) for lane in LANES}
        measured = (states["uniform"].get("deadline") or {}).get("stepSeconds")
        if greedy_at is None and (greedy_at := play_greedy(
                running, names["greedy"], t0, setup, measured)) is not None:
            print(f"{greedy_at:.0f}s: greedy goes to on-demand to the end (step time "
                  f"{measured or setup.step_seconds:.3f}s)", flush=True)
        if all(s.get("phase") in ("Succeeded", "Failed") for s in states.values()):
            break
        time.sleep(2.0)
    results = [result(lane, status(running, names[lane]), created[lane], setup)
               for lane in LANES]
    for lane in LANES:
        running.custom.delete_namespaced_custom_object(*ARGS, NAMESPACE, PLURAL, names[lane])
    if spot is not None:
        node.preempt(spot, 0)
    wait(lambda: not running.core.list_namespaced_pod(NAMESPACE).items,
         "the replay's pods to end", 180)
    return results


def table(setup: Setup, runs: list[list[LaneResult]]) -> str:
    rows = ["| run | lane | finished after (s) | deadline met | spot s | on-demand s | "
            "preemptions | cost vs on-demand only |", "| --- | --- | --- | --- | --- | --- | "
            "--- | --- |"]
    for i, results in enumerate(runs, 1):
        base = next(r for r in results if r.lane == "on-demand").paid or 1.0
        for r in results:
            after = f"{r.finished_after:.0f}" if r.finished_after is not None else "not done"
            rows.append(f"| {i} | {r.lane} | {after} | {'yes' if r.met else 'NO'} | "
                        f"{r.spot_seconds:.0f} | {r.on_demand_seconds:.0f} | {r.preemptions} | "
                        f"{r.paid / base:.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--total-steps", type=int, default=1500)
    p.add_argument("--step-seconds", type=float, default=0.2)
    p.add_argument("--deadline", type=int, default=630)
    p.add_argument("--restart-seconds", type=int, default=45)
    p.add_argument("--margin-seconds", type=int, default=30)
    p.add_argument("--outage-at", type=float, default=90)
    p.add_argument("--outage-end", type=float, default=320)
    p.add_argument("--notice", type=int, default=10)
    p.add_argument("--spot-price-ratio", type=float, default=0.3)
    a = p.parse_args(argv)
    setup = Setup(a.total_steps, a.step_seconds, a.deadline, a.restart_seconds,
                  a.margin_seconds, a.outage_at, a.outage_end, a.notice, a.spot_price_ratio)
    state = Path(os.environ.get("SPOTRUN_BENCH_STATE_DIR",
                                Path.home() / ".cache" / "spotrun" / "bench-deadline"))
    state.mkdir(parents=True, exist_ok=True)
    s3server.stop(state)
    s3 = s3server.start(state)
    runs: list[list[LaneResult]] = []
    try:
        with operator_running(state, spot=0, on_demand=1) as running:
            node = ProcessNode(control_port(state), state)
            running.core.create_namespaced_secret(NAMESPACE, {
                "metadata": {"name": SECRET},
                "stringData": {"AWS_ACCESS_KEY_ID": s3.access_key,
                               "AWS_SECRET_ACCESS_KEY": s3.secret_key}})
            for run in range(1, a.runs + 1):
                runs.append(play(running, node, s3, setup, run))
                print(table(setup, runs[-1:]), flush=True)
    finally:
        s3server.stop(state)
        if left := procs.sweep(state):
            print(f"killed {len(left)} process(es) left with this state dir: {left}")
    print(f"\n{setup}\n\n{table(setup, runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
