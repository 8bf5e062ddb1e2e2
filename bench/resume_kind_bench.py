"""Resume benchmark on kind (``make bench-resume-kind``): steps lost and the time from a preempted
trainer's final save to the next attempt's first step, on real kubelets, containers and pod
network.

The cluster of ``hack/cluster up`` (kindcluster.up: one on-demand and one spot worker, the images
pushed to hack/kind/registry, the S3 server; one that is up is reused), the operator
helm-installed from the pushed image and pinned to the control-plane node (a system node pool:
every worker may be reclaimed here), and the example digits job (manifests/examples/job.yaml
with the image, S3 and epochs substituted: checkpoints in S3 through the sidecar, the warm start
on, the trainer saving at once on SIGTERM) with spec.spot.nodeSelectorTerms naming both
workers, so that each interruption's next attempt has somewhere to go: the other worker.
RESUMES times the worker the job's pod runs on is preempted the way a cloud does it
(hack/kind/preempt --notice 5: the interruption taint, eviction with the pod's grace, the node's
container stopped and its Node deleted), then comes back as fresh capacity (hack/kind/add-node).

Marks, all wall times of one clock (kind's nodes are containers on this machine): the preemption's
start (the bench's clock) and each trainer's progress log (``SPOTRUN_PROGRESS_FILE``, one file per
pod, in the host folder every worker mounts: hack/kind/up's ``rwx/``): its last event (the final
save; the process exits right after), its restore (with the library's own duration) and its
first step. The old trainer's last event is its final save; the process exits after it (the
process-node bench saw interpreters hang there until SIGKILL: that wait is not in these
figures, and the next attempt does not wait for it). Steps lost: the step the old trainer last
finished minus the step the next one restored. Writes bench/RESUME_KIND_RESULTS.md (what follows
its KEPT line is kept).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import secrets
import shutil
import signal
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "hack"), str(REPO / "bench")]

from operator_bench import percentile  # noqa: E402
from resume_bench import KEPT, load  # noqa: E402

from localcluster import kindcluster, kinddemo  # noqa: E402
from localcluster.demo import JOB_FILE, create_secret, helm_install, load_job  # noqa: E402
from spotrun import progress  # noqa: E402

RESULTS = REPO / "bench" / "RESUME_KIND_RESULTS.md"
NAMESPACE = "spotrun-bench"
JOB = "digits"
NOTICE = 5  # seconds between the interruption taint and the eviction (hack/kind/preempt)
TRAIN_STEPS = 20  # steps each attempt trains before its node is reclaimed
MOUNT = "/progress"  # in the trainer container
RWX_PATH = "/mnt/spotrun-rwx"  # on each worker (hack/kind/kindconfig.py)
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
# (row key, what it holds), the table's order
PHASES = [
    ("notice -> old final save", "the old trainer saves at once on SIGTERM (the default)"),
    ("notice -> new trainer's restore()",
     "the next pod, made at the notice: scheduled, started, python + torch import, data, model"),
    ("final save -> restored",
     "the final upload and the new sidecar's download, or the new trainer's start: the later"),
    ("library restore", "restore() on the new pod: waits for the sidecar, loads from the volume"),
    ("restored -> first step", "the first optimizer step after the restore"),
]
TOTAL = "old final save -> first step"


def operator_values() -> list[str]:
    """Helm settings that keep the operator on the control-plane node."""
    toleration = f'[{{"key": "{CONTROL_PLANE}", "operator": "Exists", "effect": "NoSchedule"}}]'
    return ["--set-json", f'nodeSelector={{"{CONTROL_PLANE}": ""}}',
            "--set-json", f"tolerations={toleration}"]


def bench_job(job: dict[str, Any], workers: list[str], folder: str, resumes: int
              ) -> dict[str, Any]:
    """The example job with a progress log per pod in FOLDER (on the node) and both WORKERS as
    its spot capacity (pure)."""
    job = copy.deepcopy(job)
    pod = job["spec"]["template"]["spec"]
    trainer = pod["containers"][0]
    trainer["env"] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "SPOTRUN_PROGRESS_FILE", "value": f"{MOUNT}/$(POD_NAME).jsonl"},
    ]
    trainer["volumeMounts"] = [{"name": "progress", "mountPath": MOUNT}]
    pod["volumes"] = [{"name": "progress", "hostPath": {"path": folder, "type": "Directory"}}]
    spot = job["spec"]["spot"]
    spot["nodeSelectorTerms"] = [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": workers}]}]
    spot["maxPreemptions"] = max(int(spot.get("maxPreemptions", 20)), resumes + 1)
    return job


def marks(events: list[dict[str, Any]]) -> dict[str, float]:
    """One trainer's marks (pure): its last event, its restore (end, seconds, step), its first
    step and the last step it finished."""
    out: dict[str, float] = {"last": float(events[-1]["t"])} if events else {}
    steps = [e for e in events if e.get("event") == "step"]
    if steps:
        out["first_step"] = float(steps[0]["t"])
        out["last_step"] = float(steps[-1]["step"])
    restore = next((e for e in events if e.get("event") == "restore"), None)
    if restore is not None:
        out["restored"] = float(restore["t"])
        out["restore_seconds"] = float(restore.get("seconds", 0.0))
        out["restored_step"] = float(restore["step"])
    return out


def resume_row(notice: float, old: dict[str, float], new: dict[str, float]) -> dict[str, float]:
    """Seconds per phase and the steps lost of one resume (pure)."""
    return {
        "notice -> old final save": old["last"] - notice,
        "notice -> new trainer's restore()": new["restored"] - new["restore_seconds"] - notice,
        "final save -> restored": new["restored"] - old["last"],
        "library restore": new["restore_seconds"],
        "restored -> first step": new["first_step"] - new["restored"],
        TOTAL: new["first_step"] - old["last"],
        "lost": old["last_step"] - new["restored_step"],
    }


def wait_marks(folder: Path, pod: str, want: str, timeout: float) -> dict[str, float]:
    """POD's marks once they hold WANT."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = marks(progress.read(str(folder / f"{pod}.jsonl")))
        if want in found:
            return found
        time.sleep(0.5)
    raise TimeoutError(f"{pod}'s trainer logged no {want} within {timeout:.0f}s")


def pod_node(core: Any, pod: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = core.read_namespaced_pod(pod, NAMESPACE)
        except Exception:  # noqa: BLE001 (not created yet)
            found = None
        if found is not None and found.status.phase == "Running":
            return str(found.spec.node_name)
        time.sleep(1)
    raise TimeoutError(f"pod {pod} did not run within {timeout:.0f}s")


def wait_trained(folder: Path, pod: str, steps: int, timeout: float) -> None:
    """Until POD's trainer has finished STEPS steps since it started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = marks(progress.read(str(folder / f"{pod}.jsonl")))
        start = found.get("restored_step", 0.0)
        if found.get("last_step", -1.0) >= start + steps:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{pod} did not train {steps} steps within {timeout:.0f}s")


def run(resumes: int) -> dict[str, Any]:
    from kubernetes import client

    before = kindcluster.probe()
    installed, rows, loads, status = False, [], [], {}
    try:
        cluster = kindcluster.up(kindcluster.DEFAULT_SPOT, kindcluster.DEFAULT_ON_DEMAND)
        kinddemo.prepare(cluster.kubeconfig, NAMESPACE)
        env = cluster.env()
        name = kindcluster.cluster_name(os.environ)
        workers = [f"{name}-worker", f"{name}-worker2"]
        folder = Path(cluster.kubeconfig).parent / "rwx" / NAMESPACE
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        folder.chmod(0o777)  # the trainer's uid writes there
        s3 = kindcluster.s3_env(cluster)
        installed = True
        api = helm_install(cluster.kubeconfig, *kindcluster.helm_image_values(cluster.images),
                           *operator_values(), "--take-ownership", timeout="10m")
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        create_secret(api, NAMESPACE, s3["AWS_ACCESS_KEY_ID"], s3["AWS_SECRET_ACCESS_KEY"])
        job = kinddemo.with_trainer(
            load_job(JOB_FILE, s3["SPOTRUN_TEST_BUCKET"], s3["SPOTRUN_POD_S3_ENDPOINT"],
                     prefix=f"bench-{secrets.token_hex(4)}"),
            cluster.images["trainer"], 10_000)
        body = bench_job(job, workers, f"{RWX_PATH}/{NAMESPACE}", resumes)
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            "spotrun.dev", "v1alpha1", NAMESPACE, "resumabletrainingjobs", body)
        for i in range(1, resumes + 1):
            old, new = f"{JOB}-{i}", f"{JOB}-{i + 1}"
            node = pod_node(core, old, 900)
            wait_trained(folder, old, TRAIN_STEPS, 600)
            loads.append(load())
            notice = time.time()
            kindcluster.preempt(node, NOTICE, False, env)
            kindcluster.add_node(node, env)  # capacity back for the next round
            before_exit = wait_marks(folder, old, "last_step", 60)
            after = wait_marks(folder, new, "first_step", 600)
            rows.append(resume_row(notice, before_exit, after))
            print(f"resume {i} ({node}): " + "  ".join(
                f"{k} {v:.2f}" for k, v in rows[-1].items()), flush=True)
        status = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "spotrun.dev", "v1alpha1", NAMESPACE, "resumabletrainingjobs", JOB).get("status", {})
    finally:
        kinddemo.teardown(kinddemo.teardown_steps(before, False, installed), NAMESPACE)
    return {"rows": rows, "loads": loads, "status": status}


def table(rows: list[dict[str, float]]) -> str:
    lines = ["| phase | p50 (s) | p90 (s) | what it holds |", "| --- | ---: | ---: | --- |"]
    for name, what in PHASES:
        values = [r[name] for r in rows]
        lines.append(f"| {name} | {percentile(values, 0.5):.2f} | "
                     f"{percentile(values, 0.9):.2f} | {what} |")
    totals = [r[TOTAL] for r in rows]
    lines.append(f"| **total: {TOTAL}** | **{percentile(totals, 0.5):.2f}** | "
                 f"**{percentile(totals, 0.9):.2f}** | the headline |")
    return "\n".join(lines)


def report(r: dict[str, Any]) -> str:
    rows = r["rows"]
    lost = [int(row["lost"]) for row in rows]
    totals = [row[TOTAL] for row in rows]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    preemptions, attempt = r["status"].get("preemptions"), r["status"].get("attempt")
    return f"""# Resume benchmark on kind (`make bench-resume-kind`)

`bench/resume_kind_bench.py`, run {when} on {platform.machine()} with {os.cpu_count()} CPU cores
(Python {platform.python_version()}), on hack/kind's cluster (real kubelets and containerd in node
containers, Kubernetes v1.37) with the S3 server (versitygw) in a container beside it, all on
this machine. Load average (1 / 5 min) at each preemption: {", ".join(r["loads"])}.

Method: the digits example (`manifests/examples/job.yaml`: `examples/digits/train.py` on CPU,
checkpoints in S3 through the sidecar, the warm start on, the trainer saving at once on SIGTERM)
with both workers as its spot capacity; the operator on the control-plane node. {len(rows)}
times, once the attempt has trained {TRAIN_STEPS} steps, the worker it runs on is preempted
(`hack/kind/preempt --notice {NOTICE}`: the interruption taint, eviction with the pod's grace,
the node stopped and its Node deleted), then added back (`hack/kind/add-node`). Times come from
the trainers' progress logs (one host clock); the preemption's start from the bench's. The job
ended with {preemptions} preemptions recorded, attempt {attempt}.

{table(rows)}

**Steps lost per resume: {", ".join(map(str, lost))}** ({lost.count(0)} of {len(lost)} lost none).
Old trainer's final save -> the next attempt's first step: p50 {statistics.median(totals):.2f} s,
min {min(totals):.2f} s, max {max(totals):.2f} s.

{KEPT}
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resumes", type=int, default=10)
    p.add_argument("--no-write", action="store_true", help="print only; keep the results file")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the cleanup in run() still runs
    r = run(args.resumes)
    print(table(r["rows"]))
    if not args.no_write:
        old = RESULTS.read_text() if RESULTS.exists() else ""
        text = report(r)
        RESULTS.write_text(text[: text.index(KEPT)] + (old[old.index(KEPT):] if KEPT in old
                                                       else KEPT + "\n"))
        print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0 if all(row["lost"] == 0 for row in r["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
