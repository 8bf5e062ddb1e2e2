"""`make demo`: the digits job on the local cluster, its spot node preempted twice.

``hack/demo`` runs it on hack/kind's cluster (kinddemo.py, the default). ``hack/demo --process``
(or SPOTRUN_CLUSTER=process) runs it on the process node, where ``main`` sets everything up (the
S3 server, the control plane with 3 spot and 1 on-demand process nodes, ``helm install`` of
charts/spotrun, the S3 Secret), submits manifests/examples/job.yaml, and hands over to
``watch_job``: live progress the way ``kubectl get rtj -w`` shows it, two preemptions at random
steps, then the summary and demo-report.png. Everything it started is stopped at the end, on an
error or on Ctrl-C. ``watch_job`` is also what the e2e test drives against the test session's
cluster, and what kinddemo.py drives on kind.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import config, controlplane, procs, s3server, state
from .cli import add_cluster_flags, down
from .demoreport import Attempt, Outcome, Preemption, draw, summary
from .kindcluster import backend
from .node.handle import ProcessNode

GROUP, VERSION, PLURAL = "spotrun.dev", "v1alpha1", "resumabletrainingjobs"
LABEL_JOB, LABEL_ATTEMPT, LABEL_CAPACITY = (
    "spotrun.dev/job",
    "spotrun.dev/attempt",
    "spotrun.dev/capacity",
)
# The job it submits; SPOTRUN_DEMO_JOB names another file (e.g. your own job).
JOB_FILE = Path(
    os.environ.get("SPOTRUN_DEMO_JOB", config.REPO_ROOT / "manifests" / "examples" / "job.yaml")
)
CHART = config.REPO_ROOT / "charts" / "spotrun"
OPERATOR_NAMESPACE, RELEASE = "spotrun-system", "spotrun"
SECRET = "s3-credentials"
NOTICE_NOTE = "interruption notice, drain, node deleted"
# The example's 20 epochs take ~6 s on process nodes, about what a preemption and the spot
# node's return take (longer on a busy machine): the second preemption could land after the
# last step. Three times as many leave it ample room.
PROCESS_EPOCHS = 60


def load_job(
    path: Path, bucket: str, endpoint: str, prefix: str | None = None
) -> dict[str, Any]:
    """The example job, pointed at this S3 server and bucket (the prefix kept unless given)."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    job: dict[str, Any] = copy.deepcopy(
        next(d for d in docs if d.get("kind") == "ResumableTrainingJob")
    )
    storage = job["spec"]["checkpoint"]["storage"]
    if prefix is None:
        prefix = str(storage["uri"]).removeprefix("s3://").partition("/")[2]
    storage["uri"] = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    storage["endpoint"] = endpoint
    return job


def with_epochs(job: dict[str, Any], epochs: int) -> dict[str, Any]:
    """``job`` whose trainer (the first container) trains ``epochs`` epochs when its command or
    args say ``--epochs N``; nothing else changes."""
    job = copy.deepcopy(job)
    trainer = job["spec"]["template"]["spec"]["containers"][0]
    for key in ("command", "args"):
        argv = trainer.get(key) or []
        if "--epochs" in argv[:-1]:
            argv[argv.index("--epochs") + 1] = str(epochs)
    return job


def planned_epochs(job: dict[str, Any]) -> int | None:
    """``--epochs N`` of the trainer's command, if it says."""
    for c in job["spec"]["template"]["spec"]["containers"]:
        argv = [str(x) for x in (c.get("command") or []) + (c.get("args") or [])]
        if "--epochs" in argv[:-1]:
            return int(argv[argv.index("--epochs") + 1])
    return None


def preemption_steps(total: int, rng: random.Random) -> list[int]:
    """Two random moments: one in the first 20–40 % of training, one at 55–80 %."""
    return [int(total * rng.uniform(0.2, 0.4)), int(total * rng.uniform(0.55, 0.8))]


@dataclass
class Watch:
    """What the demo saw of one job: its attempts (log lines included) and the preemptions."""

    core: Any
    namespace: str
    name: str
    trainer: str
    t0: float = field(default_factory=time.monotonic)
    attempts: dict[str, Attempt] = field(default_factory=dict)
    preemptions: list[Preemption] = field(default_factory=list)
    followers: list[threading.Thread] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def observe(self, pods: list[Any]) -> None:
        seen = set()
        for pod in pods:
            meta = pod.metadata
            seen.add(meta.name)
            labels = meta.labels or {}
            a = self.attempts.setdefault(
                meta.name, Attempt(int(labels.get(LABEL_ATTEMPT, "0")), meta.name)
            )
            a.node = pod.spec.node_name or a.node
            a.capacity = labels.get(LABEL_CAPACITY, a.capacity)
            running = any(
                s.name == self.trainer and s.state and s.state.running
                for s in (pod.status.container_statuses or [])
            )
            if running and a.started is None:
                a.started = self.now()
                self.follow(a)
            if pod.status.phase in ("Succeeded", "Failed") and a.ended is None:
                a.ended = self.now()
        for name, a in self.attempts.items():
            if name not in seen and a.ended is None:
                a.ended = self.now()

    def follow(self, a: Attempt) -> None:
        def run() -> None:
            try:
                stream = self.core.read_namespaced_pod_log(
                    a.pod, self.namespace, container=self.trainer, follow=True,
                    _preload_content=False,
                )
                rest = b""
                for chunk in stream.stream(4096):
                    rest += chunk
                    *lines, rest = rest.split(b"\n")
                    for line in lines:
                        a.feed(line.decode(errors="replace"), self.now())
            except Exception as err:  # noqa: BLE001 - a lost log stream only thins the report
                print(f"  (log of {a.pod} ended: {type(err).__name__})", flush=True)

        thread = threading.Thread(target=run, name=f"log-{a.pod}", daemon=True)
        thread.start()
        self.followers.append(thread)

    def ordered(self) -> list[Attempt]:
        return sorted(self.attempts.values(), key=lambda a: a.number)


class Disruption:
    """A preemption and the spot node's return, run in a thread; its failure surfaces in the
    watching loop (``check``), not as a job that never finishes."""

    def __init__(self, preempt: Callable[[str], None], add_spot_node: Callable[[], str],
                 echo: Callable[[str], None]) -> None:
        self.preempt, self.add_spot_node, self.echo = preempt, add_spot_node, echo
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self, node: str) -> None:
        self.thread = threading.Thread(target=self._run, args=(node,), name="preempt",
                                       daemon=True)
        self.thread.start()

    def _run(self, node: str) -> None:
        try:
            self.preempt(node)
            self.echo(f"# a new spot node joins: {self.add_spot_node()}")
        except BaseException as err:  # noqa: BLE001 - raised again by check()
            self.error = err

    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"preempting or adding a node failed: {self.error}") from self.error

    def join(self, timeout: float = 300.0) -> None:
        """Wait for a running preemption or node's return (a teardown must not race it)."""
        if self.thread is not None:
            self.thread.join(timeout)

    def finish(self, timeout: float = 300.0) -> None:
        self.join(timeout)
        self.check()


def _row(cells: list[str]) -> str:
    widths = [8, 11, 8, 7, 12, 12, 14]
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))


def watch_job(
    api: Any,
    job: dict[str, Any],
    namespace: str,
    preempt: Callable[[str], None],
    add_spot_node: Callable[[], str],
    out: Path,
    seed: int = 7,
    timeout: float = 900.0,
    echo: Callable[[str], None] = print,
    notes: Sequence[str] = (NOTICE_NOTE,),
) -> list[str]:
    """Submit ``job``, preempt its spot node twice at random steps, report; the summary lines.

    ``preempt(node)`` then ``add_spot_node()`` run in a thread while the job is watched on (a
    drain or a node's return takes seconds to a minute on kind); ``notes[i]`` (the last one
    for later ones) says how preemption i+1 is done."""
    from kubernetes import client

    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    name = job["metadata"]["name"]
    trainer = job["spec"]["template"]["spec"]["containers"][0]["name"]
    rng = random.Random(seed)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, job)
    w = Watch(core, namespace, name, trainer)
    echo(_row(["NAME", "PHASE", "ATTEMPT", "STEP", "CHECKPOINT", "PREEMPTIONS", "NODE"]))
    targets: list[int] | None = None
    last_row: list[str] = []
    status: dict[str, Any] = {}
    disruption = Disruption(preempt, add_spot_node, echo)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            disruption.check()
            body: dict[str, Any] = custom.get_namespaced_custom_object(  # type: ignore[assignment]
                GROUP, VERSION, namespace, PLURAL, name
            )
            status = body.get("status") or {}
            pods = core.list_namespaced_pod(namespace, label_selector=f"{LABEL_JOB}={name}").items
            w.observe(pods)
            attempts = w.ordered()
            current = attempts[-1] if attempts else None
            step = max((a.last_step for a in attempts), default=0)
            row = [
                name, str(status.get("phase", "")), str(status.get("attempt", "")),
                str(step), str((status.get("lastCheckpoint") or {}).get("step", "")),
                str(status.get("preemptions", 0)), current.node if current else "",
            ]
            if row != last_row and (row[:3] + row[4:] != last_row[:3] + last_row[4:]
                                    or step - int(last_row[3] or 0) >= 100):
                echo(_row(row))
                last_row = row
            if status.get("phase") in ("Succeeded", "Failed"):
                break
            if targets is None and attempts and attempts[0].steps_per_epoch:
                epochs = planned_epochs(job) or 20
                targets = preemption_steps(epochs * attempts[0].steps_per_epoch, rng)
                first, second = targets
                echo(f"# the demo will preempt the spot node at steps {first} and {second}")
            due = targets[len(w.preemptions)] if targets and len(w.preemptions) < 2 else None
            if (
                due is not None and current is not None and current.ended is None
                and current.capacity == "spot" and current.node and current.last_step >= due
                and all(p.attempt != current.number for p in w.preemptions)
                and not disruption.busy()
            ):
                note = notes[min(len(w.preemptions), len(notes) - 1)]
                w.preemptions.append(Preemption(w.now(), current.node, current.number,
                                                current.last_step))
                echo(f"# preempting {current.node} (spot) at step {current.last_step}: {note}")
                disruption.start(current.node)
            time.sleep(0.5)
        else:
            raise TimeoutError(f"{namespace}/{name} did not finish within {timeout:.0f}s")
    except BaseException:  # the teardown after this must not race a preemption in flight
        disruption.join()
        raise
    disruption.finish()
    for thread in w.followers:
        thread.join(timeout=15)
    w.observe(core.list_namespaced_pod(namespace, label_selector=f"{LABEL_JOB}={name}").items)
    cost = job["spec"].get("cost") or {}
    outcome = Outcome(
        str(status.get("phase")),
        float(status.get("spotSeconds") or 0),
        float(status.get("onDemandSeconds") or 0),
        cost.get("spotHourly"),
        cost.get("onDemandHourly"),
    )
    lines = summary(w.ordered(), w.preemptions, outcome, w.now())
    draw(w.ordered(), w.preemptions, out)
    return lines + [f"picture: {out}"]


def _run(argv: list[str], **kwargs: Any) -> None:
    print("$ " + " ".join(argv), flush=True)
    subprocess.run(argv, check=True, **kwargs)


def helm_install(kubeconfig: str, *settings: str, timeout: str = "5m") -> Any:
    """``helm install --wait`` of the chart with ``settings``; an API client for the cluster."""
    from kubernetes import config as kube_config

    _run([str(config.binary("helm")), "install", RELEASE, str(CHART),
          "--namespace", OPERATOR_NAMESPACE, "--create-namespace", "--wait", "--timeout", timeout,
          *settings], env={**os.environ, "KUBECONFIG": kubeconfig})
    return kube_config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]


def create_secret(api: Any, namespace: str, access_key: str, secret_key: str) -> None:
    """The job's S3 Secret (manifests/examples/s3-secret.yaml's name and keys)."""
    from kubernetes import client

    client.CoreV1Api(api).create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name=SECRET),
        string_data={"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key},
    ))
    print(f"secret {namespace}/{SECRET} holds the S3 keys; the operator cannot read it",
          flush=True)


def _install(record: state.ClusterRecord) -> Any:
    """``helm install`` the chart (the process node runs the operator's pod), the S3 Secret."""
    cp, s3 = record.control_plane, record.s3
    assert cp is not None and s3 is not None
    # Process-node pods share the host network: free ports, not the chart's 8081/8080.
    health, metrics = procs.free_ports(2)
    api = helm_install(cp.kubeconfig, "--set", f"ports.health={health}",
                       "--set", f"ports.metrics={metrics}")
    create_secret(api, "default", s3.access_key, s3.secret_key)
    return api


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/demo", description=__doc__)
    parser.add_argument("--seed", type=int, default=7, help="where the preemptions fall")
    parser.add_argument("--out", type=Path, default=config.REPO_ROOT / "demo-report.png")
    parser.add_argument("--keep", action="store_true",
                        help="leave the cluster up afterwards (kind: also SPOTRUN_KIND_KEEP=1, "
                             "`hack/cluster down` removes it; --process: the demo prints how)")
    add_cluster_flags(parser)
    args = parser.parse_args(argv)
    try:
        which = backend(args.kind, args.process, os.environ.get("SPOTRUN_CLUSTER"))
    except ValueError as err:
        parser.error(str(err))
    if which == "kind":
        from . import kinddemo  # it imports this module

        return kinddemo.main(args)
    # Its own state dir: the demo starts and stops its cluster, never one that
    # `hack/cluster --process up` made.
    st = Path(os.environ.get("SPOTRUN_STATE_DIR", config.cache_dir() / "demo"))
    print(f"spotrun demo: local cluster in {st}", flush=True)
    down(st)  # a re-run starts clean
    started = time.monotonic()
    try:
        record = state.load(st)
        record.s3 = s3server.start(st)
        state.save(st, record)
        record.control_plane = controlplane.start(
            st, 3, 1, progress=lambda message: print(f"  {message}", flush=True))
        state.save(st, record)
        print(f"cluster up in {time.monotonic() - started:.0f}s: S3 at {record.s3.endpoint}, "
              "3 spot and 1 on-demand process nodes", flush=True)
        api = _install(record)
        node = ProcessNode(record.control_plane.node_control_port, st)
        job = with_epochs(load_job(JOB_FILE, record.s3.bucket, record.s3.endpoint),
                          PROCESS_EPOCHS)
        print(f"$ kubectl apply -f {JOB_FILE.relative_to(config.REPO_ROOT)}  # with --epochs "
              f"{PROCESS_EPOCHS}", flush=True)
        lines = watch_job(api, job, "default", lambda n: node.preempt(n, 2.0),
                          lambda: node.add_node("spot"), args.out, seed=args.seed)
        print("\n" + "\n".join(lines), flush=True)
        return 0 if lines[0].startswith("job Succeeded") else 1
    except KeyboardInterrupt:
        print("\ninterrupted: tearing everything down", flush=True)
        return 130
    finally:
        if args.keep:
            print("cluster left up: `eval \"$(hack/cluster --process env)\"` with "
                  f"SPOTRUN_STATE_DIR={st}; `hack/cluster --process down` when done", flush=True)
        else:
            down(st)
            print("demo cluster stopped; no process left", flush=True)


if __name__ == "__main__":
    sys.exit(main())
