"""Resume benchmark (``make bench-resume``): how long a preempted job takes to train again.

Starts its own local control plane with two spot process nodes and its own S3 server
(state in ``$SPOTRUN_BENCH_STATE_DIR``, default ``~/.cache/spotrun/bench-resume``, never
the test cluster's; every port is a free one, the sidecar's included, so tests running
beside it collide with nothing), applies the CRD and runs the operator under its
least-privilege token (``operator_bench.operator_running``). It submits the digits example
(``examples/digits/train.py``) as a ResumableTrainingJob with checkpoints in S3 (the
production path: the sidecar restores from S3, then the trainer restores from the shared
volume), lets it train, then PREEMPTIONS times plays a spot interruption of the node its pod
runs on (``ProcessNode.preempt``: taint, eviction with grace, node deleted), adds fresh spot
capacity first (the warm start needs somewhere to go), and times trainer exit -> the next
attempt's first step.

Each resume is broken down from real timestamps: the pods' watch events as the bench
receives them (ADDED, bound, each container running / started / terminated, phase), the
sidecar's own endpoint (the port answers: the server is up; ``/startupz`` answers 200:
the restore from S3 is done), and the trainer's progress log (``SPOTRUN_PROGRESS_FILE``:
the library's ``restore`` event with its duration and the first ``step`` event, wall
time). Prints p50/p90 per phase and of the total; writes bench/RESUME_RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "hack"), str(REPO / "bench")]

from operator_bench import (  # noqa: E402
    ARGS,
    NAMESPACE,
    PLURAL,
    cpu_seconds,
    operator_running,
    percentile,
)

from localcluster import config, procs, s3server  # noqa: E402
from localcluster.node.handle import ProcessNode  # noqa: E402
from localcluster.state import S3Info  # noqa: E402

RESULTS = REPO / "bench" / "RESUME_RESULTS.md"
# What follows this line in RESULTS is written by people (history, analysis): a run keeps it.
KEPT = "<!-- kept across runs: history and analysis -->"
JOB = "digits"
SIDECAR = "spotrun-sidecar"
TRAINER = "trainer"
GOAL_P50 = 5.0
POLL = 0.02  # how often the bench asks the new sidecar's port (s)

# (phase, from mark, to mark, what it holds): the marks are wall times (time.time()). With the
# warm start (docs/warm-start.md) the next attempt starts at the notice, beside the old one:
# the two chains overlap, so a phase may be negative and they do not add up to the total.
PHASES = [
    ("notice -> next pod created", "notice", "created",
     "taint + eviction -> watch event -> reconcile -> warm start recorded -> pod created"),
    ("scheduling", "created", "bound", "kube-scheduler binds the new pod (a fresh spot node)"),
    ("node start", "bound", "sidecar_run", "process node sees the binding, starts the sidecar"),
    ("trainer launch", "sidecar_run", "trainer_run",
     "no startupProbe: the node starts the trainer beside the sidecar"),
    ("trainer start", "trainer_run", "restore_begin",
     "python + torch import, data, model, until restore() is called"),
    ("notice -> old trainer exit", "notice", "exit",
     "the old trainer trains on through the notice, then saves and exits"),
    ("final upload + old pod end", "exit", "old_end",
     "old sidecar flushes the final checkpoint, writes its ended marker, exits"),
    ("new sidecar listens", "old_end", "listen",
     "process nodes share one network: the new sidecar binds once the old one let go"),
    ("sidecar restore", "listen", "restored",
     "the old attempt's marker seen, download of the newest checkpoint from S3"),
    ("library restore", "restored", "restore_end",
     "restore() sees .spotrun-ready (20 ms poll), loads from the volume"),
    ("first step", "restore_end", "first_step", "restore done -> first optimizer step"),
]
# How much of the next attempt's start ran while the old trainer still worked: from the new
# pod's creation to the old trainer's exit, or to the new trainer's restore() call if earlier.
OVERLAP = "overlap"


# CPU seconds a process had used by a mark: figures the machine's load cannot inflate much.
CPU = [
    ("sidecar_cpu", "sidecar process", "restore done"),
    ("trainer_cpu", "trainer process", "first step"),
]


def digits_job(
    bucket: str, endpoint: str, port: int, progress: Path, backoff: float | None = None
) -> dict[str, Any]:
    """The digits example for many epochs (it must outlive the preemptions), on CPU;
    ``spot.backoffSeconds`` is the default unless ``backoff`` is given."""
    spot: dict[str, Any] = {"maxPreemptions": 1000}
    if backoff is not None:
        spot["backoffSeconds"] = backoff
    trainer = {
        "name": TRAINER,
        "image": "spotrun.dev/process:local",
        "command": ["python", "examples/digits/train.py", "--epochs", "500"],
        "env": [
            {"name": "SPOTRUN_PROGRESS_FILE", "value": str(progress)},
            # uses the notice (opt-in): the next trainer starts while this one trains on
            {"name": "SPOTRUN_SAVE_AT_ONCE", "value": "0"},
        ],
    }
    return {
        "apiVersion": "/".join(ARGS),
        "kind": "ResumableTrainingJob",
        "metadata": {"name": JOB},
        "spec": {
            "template": {"spec": {"containers": [trainer]}},
            "checkpoint": {
                "storage": {"uri": f"s3://{bucket}/{JOB}", "endpoint": endpoint,
                            "secretRef": {"name": "s3-credentials"}},
                "sidecarPort": port,
            },
            "gpu": {"count": 1, "fallback": "cpu"},
            "spot": spot,
            "terminationGracePeriodSeconds": 30,
        },
    }


def _status_of(pod: dict[str, Any], name: str) -> dict[str, Any]:
    status = pod.get("status") or {}
    for s in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if s.get("name") == name:
            return dict(s)
    return {}


def pod_marks(pod: dict[str, Any]) -> set[str]:
    """What a version of a pod shows (pure): bound, containers running/started/ended."""
    marks = set()
    if (pod.get("spec") or {}).get("nodeName"):
        marks.add("bound")
    sidecar, trainer = _status_of(pod, SIDECAR), _status_of(pod, TRAINER)
    if "running" in (sidecar.get("state") or {}):
        marks.add("sidecar_run")
    if sidecar.get("started"):
        marks.add("sidecar_started")
    if "running" in (trainer.get("state") or {}):
        marks.add("trainer_run")
    if "terminated" in (trainer.get("state") or {}):
        marks.add("exit")
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        marks.add("old_end")
    return marks


@dataclass
class PodTimes:
    """The receipt time of the first watch event showing each mark, per pod name."""

    seen: dict[str, dict[str, float]] = field(default_factory=dict)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def record(self, name: str, kind: str, pod: dict[str, Any]) -> None:
        now = time.time()
        with self.changed:
            marks = self.seen.setdefault(name, {})
            if kind == "ADDED":
                marks.setdefault("created", now)
            for mark in pod_marks(pod):
                marks.setdefault(mark, now)
            self.changed.notify_all()

    def wait(self, name: str, mark: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        with self.changed:
            while mark not in self.seen.get(name, {}):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"pod {name}: no '{mark}' within {timeout:.0f}s")
                self.changed.wait(left)
            return self.seen[name][mark]


def watch_pods(core: Any, times: PodTimes, stop: threading.Event) -> None:
    from kubernetes import watch

    while not stop.is_set():
        w = watch.Watch()
        try:
            for event in w.stream(core.list_namespaced_pod, NAMESPACE, timeout_seconds=60):
                raw = event["raw_object"]
                times.record(raw["metadata"]["name"], event["type"], raw)
                if stop.is_set():
                    break
        except Exception as err:  # the control plane stops under it at the end
            if not stop.is_set():
                print(f"pod watch: {err}; watching again", flush=True)
                time.sleep(0.5)


def sidecar_marks(port: int, timeout: float) -> tuple[float, float]:
    """(first time the port accepts a connection, first time /startupz answers 200)."""
    deadline = time.monotonic() + timeout
    listen = None
    while time.monotonic() < deadline:
        if listen is None:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                listen = time.time()
            except OSError:
                time.sleep(POLL)
                continue
        try:
            url = f"http://127.0.0.1:{port}/startupz"
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return listen, time.time()
        except OSError:
            pass
        time.sleep(POLL)
    raise TimeoutError(f"the sidecar on port {port} was not restored within {timeout:.0f}s")


def trainer_events(progress: Path) -> list[list[dict[str, Any]]]:
    """The progress log's events grouped per trainer process, in order of start (pure read)."""
    runs: dict[int, list[dict[str, Any]]] = {}
    if progress.exists():
        for line in progress.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            runs.setdefault(int(record["pid"]), []).append(record)
    return sorted(runs.values(), key=lambda events: float(events[0]["t"]))


def trainer_marks(events: list[dict[str, Any]]) -> dict[str, float]:
    """restore_begin/restore_end/first_step of one trainer run (pure)."""
    out: dict[str, float] = {}
    for e in events:
        if e["event"] == "restore" and "restore_end" not in out:
            out["restore_end"] = float(e["t"])
            out["restore_begin"] = float(e["t"]) - float(e.get("seconds", 0.0))
        if e["event"] == "step" and "first_step" not in out:
            out["first_step"] = float(e["t"])
    return out


def wait_first_step(progress: Path, run: int, timeout: float) -> dict[str, float]:
    """The ``run``-th trainer's marks once it made its first step, with ``trainer_cpu``: the
    CPU seconds its process has used by then (what the load on the machine cannot inflate)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = trainer_events(progress)
        if len(runs) > run and "first_step" in (marks := trainer_marks(runs[run])):
            marks["trainer_cpu"] = _cpu_or_nan(int(runs[run][0]["pid"]))
            return marks
        time.sleep(0.1)
    raise TimeoutError(f"trainer run {run + 1} made no step within {timeout:.0f}s")


def _cpu_or_nan(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except (OSError, IndexError, ValueError):
        return float("nan")


def sidecar_cpu(state: Path) -> float:
    """CPU seconds of the running sidecar process of this state dir's cluster (nan if none)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        mine = f"SPOTRUN_LOCALCLUSTER_STATE={state}".encode() in environ
        if mine and b"sidecar" in argv and any(a.endswith(b"spotrun") for a in argv):
            return _cpu_or_nan(int(proc.name))
    return float("nan")


def breakdown(marks: dict[str, float]) -> dict[str, float]:
    """Seconds per phase, the total and the overlap (pure)."""
    out = {name: marks[b] - marks[a] for name, a, b, _ in PHASES}
    out["total"] = marks["first_step"] - marks["exit"]
    ready = min(marks["exit"], marks["restore_begin"])
    out[OVERLAP] = max(0.0, ready - marks["created"])
    out["trainer_cpu"], out["sidecar_cpu"] = marks["trainer_cpu"], marks["sidecar_cpu"]
    return out


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} / {five:.2f}"


def control_port(state: Path) -> int:
    """The process node's control port (``operator_running`` keeps the record to itself):
    its own ``--control-port`` argument."""
    pid = procs.running_pid(state, "node")
    if pid is None:
        raise RuntimeError(f"no process node runs for {state}")
    for arg in Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0"):
        if arg.startswith("--control-port="):
            return int(arg.split("=", 1)[1])
    raise RuntimeError(f"the process node (pid {pid}) has no --control-port argument")


def run(
    preemptions: int, state: Path, train_seconds: float, backoff: float | None
) -> dict[str, Any]:
    s3server.stop(state)
    s3: S3Info = s3server.start(state)
    progress = state / "progress.jsonl"
    progress.unlink(missing_ok=True)
    port = procs.free_port()
    stop = threading.Event()
    loads: list[str] = []
    try:
        with operator_running(state, spot=2) as running:
            core, custom = running.core, running.custom
            node = ProcessNode(control_port(state), state)
            times = PodTimes()
            threading.Thread(target=watch_pods, args=(core, times, stop), daemon=True).start()
            core.create_namespaced_secret(NAMESPACE, {
                "metadata": {"name": "s3-credentials"},
                "stringData": {"AWS_ACCESS_KEY_ID": s3.access_key,
                               "AWS_SECRET_ACCESS_KEY": s3.secret_key}})
            body = digits_job(s3.bucket, s3.endpoint, port, progress, backoff)
            custom.create_namespaced_custom_object(*ARGS, NAMESPACE, PLURAL, body)
            wait_first_step(progress, 0, 300)
            rows: list[dict[str, float]] = []
            for i in range(1, preemptions + 1):
                old, new = f"{JOB}-{i}", f"{JOB}-{i + 1}"
                time.sleep(train_seconds)  # some training (and periodic saves) first
                pod = core.read_namespaced_pod(old, NAMESPACE)
                loads.append(load())
                # capacity elsewhere exists when the interruption comes (a cloud with spare
                # spot capacity): the warm-started pod needs somewhere to go
                node.add_node("spot")
                notice = time.time()
                node.preempt(pod.spec.node_name)
                marks = {"notice": notice, "exit": times.wait(old, "exit", 120),
                         "old_end": times.wait(old, "old_end", 120)}
                # asked only once the old pod ended: until then its sidecar holds the port
                listen, restored = sidecar_marks(port, 120)
                marks.update(listen=listen, restored=restored, sidecar_cpu=sidecar_cpu(state))
                marks.update(wait_first_step(progress, i, 120))
                for mark in ("created", "bound", "sidecar_run", "trainer_run"):
                    marks[mark] = times.wait(new, mark, 10)
                rows.append(breakdown(marks))
                print(f"resume {i}: total {rows[-1]['total']:.2f}s  overlap "
                      f"{rows[-1][OVERLAP]:.2f}s  " + "  ".join(
                          f"{n} {rows[-1][n]:.2f}" for n, *_ in PHASES + CPU), flush=True)
            stop.set()
            job = custom.get_namespaced_custom_object(*ARGS, NAMESPACE, PLURAL, JOB)
    finally:
        stop.set()
        s3server.stop(state)
        # a container the stopped process node could not end (a trainer deep in its imports)
        if left := procs.sweep(state):
            print(f"killed {len(left)} process(es) left with this state dir: {left}")
    return {"rows": rows, "loads": loads, "status": job.get("status") or {}, "backoff": backoff}


def table(rows: list[dict[str, float]]) -> str:
    lines = ["| phase | p50 (s) | p90 (s) | what it holds |", "| --- | ---: | ---: | --- |"]
    for name, _, _, what in PHASES:
        values = [r[name] for r in rows]
        lines.append(f"| {name} | {percentile(values, 0.5):.2f} | "
                     f"{percentile(values, 0.9):.2f} | {what} |")
    totals = [r["total"] for r in rows]
    lines.append(f"| **total: trainer exit -> first step** | **{percentile(totals, 0.5):.2f}** "
                 f"| **{percentile(totals, 0.9):.2f}** | the headline (the phases overlap) |")
    overlaps = [r[OVERLAP] for r in rows]
    lines.append(f"| overlap | {percentile(overlaps, 0.5):.2f} | {percentile(overlaps, 0.9):.2f} "
                 "| the next attempt's start done while the old trainer still worked |")
    lines += ["", "| CPU used by | p50 (s) | p90 (s) | by |", "| --- | ---: | ---: | --- |"]
    for key, who, mark in CPU:
        values = [r[key] for r in rows if r[key] == r[key]]  # nan: the process was not found
        if values:
            lines.append(f"| {who} | {percentile(values, 0.5):.2f} | "
                         f"{percentile(values, 0.9):.2f} | {mark} |")
    return "\n".join(lines)


def report(r: dict[str, Any], note: str) -> str:
    rows = r["rows"]
    totals = [row["total"] for row in rows]
    p50 = statistics.median(totals)
    verdict = "met" if p50 < GOAL_P50 else "NOT met"
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    backoff = ("the default `spot.backoffSeconds`" if r["backoff"] is None
               else f"`spot.backoffSeconds: {r['backoff']:g}`")
    return f"""# Resume benchmark (`make bench-resume`)

`bench/resume_bench.py`, run {when} on {platform.machine()} with {os.cpu_count()} CPU cores
(Python {platform.python_version()}), against the local control plane (etcd,
kube-apiserver, scheduler, controller-manager v1.37, process nodes) and the S3 server
(versitygw) on the same machine, with the operator under its least-privilege token. The
machine is shared with other engineers' tests: load average (1 / 5 min) at each preemption:
{", ".join(r["loads"])}.

Method: the digits example (`examples/digits/train.py`, CPU, checkpoints in S3 through the
sidecar: the production path) as a ResumableTrainingJob with {backoff} and the warm start
(`spot.warmStart`, default on); {len(rows)} times a fresh spot node is added (capacity
elsewhere, as a cloud with spare spot capacity has: the warm-started pod needs somewhere to
go), then the node the pod runs on is preempted (taint, eviction with the pod's grace period,
node deleted). Each resume is timed from the old trainer's exit to the next attempt's first
optimizer step, from the pods' watch events (receipt times), the new sidecar's port and
`/startupz` (asked every {POLL * 1000:.0f} ms once the old pod ended: on process nodes both
sidecars share one network and port) and the trainer's progress log
(`SPOTRUN_PROGRESS_FILE`). The phases overlap (the next attempt starts at the notice), so
some are negative and they do not add up to the total. The job ended with
{r["status"].get("preemptions")} preemptions recorded, attempt {r["status"].get("attempt")}.

{table(rows)}

**Resume p50 {p50:.2f} s** (goal < {GOAL_P50:g} s: {verdict}); min {min(totals):.2f} s,
max {max(totals):.2f} s over {len(rows)} preemptions.

{note}
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preemptions", type=int, default=10)
    p.add_argument("--train-seconds", type=float, default=3.0,
                   help="training between a resume and the next preemption")
    p.add_argument("--backoff", type=float, default=None,
                   help="spot.backoffSeconds of the job (default: the CRD's default)")
    p.add_argument("--note", default="", help="text appended to the results file")
    p.add_argument("--no-write", action="store_true", help="print only; keep the results file")
    args = p.parse_args()
    default = config.cache_dir() / "bench-resume"
    state = Path(os.environ.get("SPOTRUN_BENCH_STATE_DIR") or default)
    state.mkdir(parents=True, exist_ok=True)
    r = run(args.preemptions, state, args.train_seconds, args.backoff)
    print(table(r["rows"]))
    text = report(r, args.note)
    if not args.no_write:
        old = RESULTS.read_text() if RESULTS.exists() else ""
        RESULTS.write_text(text + (old[old.index(KEPT):] if KEPT in old else ""))
        print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0 if statistics.median(row["total"] for row in r["rows"]) < GOAL_P50 else 1


if __name__ == "__main__":
    sys.exit(main())
