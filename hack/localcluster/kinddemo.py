"""`make demo` on kind (``hack/demo``): the digits job on real kubelets, preempted twice.

The cluster of ``hack/cluster up`` (kindcluster.up; one that is up is reused), ``helm
install`` of charts/spotrun with the pushed operator and sidecar images, the S3 Secret, and
manifests/examples/job.yaml with only the trainer image, the checkpoint endpoint (the S3 server
as pods reach it), the bucket (under a fresh prefix) and the epochs substituted; then demo.py's
``watch_job``: the first preemption with an interruption notice, the second an abrupt loss of
the node (hack/kind/preempt), hack/kind/add-node bringing the capacity back after each; the
summary and demo-report.png. What the demo started is removed at the end, failures and Ctrl-C
included, unless SPOTRUN_KIND_KEEP=1 (or --keep): a cluster it brought up goes with
hack/kind/down (and the Docker engine, if it started that too); on a cluster that was up, its
namespace and helm release go, and the registry or S3 container if it started them.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from . import config, kindcluster
from .demo import (
    JOB_FILE,
    OPERATOR_NAMESPACE,
    RELEASE,
    create_secret,
    helm_install,
    load_job,
    watch_job,
    with_epochs,
)
from .kindcluster import KindError, Running

NAMESPACE = "spotrun-demo"  # the job's; removed as a whole at the end
EPOCHS = 100  # the example's 20 epochs take ~20 s on kind: over before a preemption could land
TIMEOUT = 1800.0  # the trainer's first pull on the spot worker, two drains, the pod GC's 40 s
# (seconds of notice, abrupt, how watch_job announces it), in order
PREEMPTIONS = (
    (5, False, "interruption notice (5 s), eviction, node stopped and its Node deleted"),
    (0, True, "abrupt loss: the node's container killed with no notice, its Node deleted"),
)


def with_trainer(job: dict[str, Any], image: str, epochs: int) -> dict[str, Any]:
    """``job`` whose trainer (the first container) runs ``image`` for ``epochs`` epochs (when
    its command says ``--epochs N``); nothing else changes."""
    job = with_epochs(job, epochs)
    job["spec"]["template"]["spec"]["containers"][0]["image"] = image
    return job


def teardown_steps(before: Running, keep: bool, installed: bool) -> list[tuple[str, ...]]:
    """What to remove at the end: ``("uninstall",)`` (the demo's namespace and helm release) or
    a hack/kind script's arguments; nothing that ran before the demo."""
    if keep:
        return []
    if not before.cluster:
        return [("down",) if before.engine else ("down", "--engine")]
    steps: list[tuple[str, ...]] = [("uninstall",)] if installed else []
    if not before.s3:
        steps.append(("s3", "down"))
    if not before.registry:
        steps.append(("registry", "down"))
    return steps


class Capacity:
    """watch_job's ``preempt`` and ``add_spot_node`` on kind: hack/kind/preempt as PREEMPTIONS
    says, in order; then hack/kind/add-node of that worker (fresh capacity of the same name)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env, self.done, self.node = env, 0, ""

    def preempt(self, node: str) -> None:
        notice, abrupt, _ = PREEMPTIONS[min(self.done, len(PREEMPTIONS) - 1)]
        self.done += 1
        self.node = node
        kindcluster.preempt(node, notice, abrupt, self.env)

    def add_spot_node(self) -> str:
        kindcluster.add_node(self.node, self.env)
        return self.node


def _succeeds(argv: list[str], kubeconfig: str, show: bool = True) -> bool:
    """Run a kubectl or helm command on the cluster (shown, its complaints on stderr; quiet:
    neither); whether it succeeded."""
    if show:
        print("$ " + " ".join(argv), flush=True)
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    output = None if show else subprocess.DEVNULL
    return subprocess.run(argv, env=env, stdout=output, stderr=output, check=False).returncode == 0


def _kubectl() -> str:
    return str(config.binary("kubectl"))


def uninstall(kubeconfig: str, namespace: str = NAMESPACE) -> None:
    """The job's namespace (while the operator runs: it lifts its finalizers), then the release."""
    _succeeds([_kubectl(), "delete", "namespace", namespace, "--ignore-not-found",
              "--timeout=300s"], kubeconfig)
    _succeeds([str(config.binary("helm")), "uninstall", RELEASE, "--namespace",
              OPERATOR_NAMESPACE, "--wait"], kubeconfig)
    _succeeds([_kubectl(), "delete", "namespace", OPERATOR_NAMESPACE, "--ignore-not-found",
              "--timeout=300s"], kubeconfig)


def prepare(kubeconfig: str, namespace: str = NAMESPACE) -> None:
    """On a cluster that was up: a kept earlier run's NAMESPACE is removed; another spotrun
    release stops the run (it would not remove what it did not install)."""
    if _succeeds([_kubectl(), "get", "namespace", namespace], kubeconfig, show=False):
        print(f"# namespace {namespace} is there: an earlier run was kept; removing it",
              flush=True)
        uninstall(kubeconfig, namespace)
    elif _succeeds([str(config.binary("helm")), "status", RELEASE, "--namespace",
                    OPERATOR_NAMESPACE], kubeconfig, show=False):
        raise KindError(f"a helm release {RELEASE} is installed in {OPERATOR_NAMESPACE} already "
                        f"(not this run's): `helm uninstall {RELEASE} -n {OPERATOR_NAMESPACE}` "
                        "first, or use another cluster (SPOTRUN_KIND_CLUSTER)")


def teardown(steps: list[tuple[str, ...]], namespace: str = NAMESPACE) -> None:
    for step in steps:
        try:
            if step == ("uninstall",):
                uninstall(str(kindcluster.kubeconfig_path()), namespace)
            else:
                kindcluster.script(*step)
        except (KindError, config.MissingBinaryError) as err:
            print(f"hack/demo: cleanup step {' '.join(step)}: {err}", file=sys.stderr)


@dataclass
class Progress:
    installed: bool = False  # helm install was started: the teardown uninstalls


def run(args: argparse.Namespace, before: Running, progress: Progress) -> int:
    """Everything between the probe and the teardown; the exit status."""
    from kubernetes import client

    cluster = kindcluster.up(kindcluster.DEFAULT_SPOT, kindcluster.DEFAULT_ON_DEMAND)
    if before.cluster:
        prepare(cluster.kubeconfig)
    s3 = kindcluster.s3_env(cluster)
    progress.installed = True
    api = helm_install(cluster.kubeconfig, *kindcluster.helm_image_values(cluster.images),
                       "--take-ownership", timeout="10m")
    client.CoreV1Api(api).create_namespace(client.V1Namespace(
        metadata=client.V1ObjectMeta(name=NAMESPACE)))
    create_secret(api, NAMESPACE, s3["AWS_ACCESS_KEY_ID"], s3["AWS_SECRET_ACCESS_KEY"])
    job = with_trainer(
        load_job(JOB_FILE, s3["SPOTRUN_TEST_BUCKET"], s3["SPOTRUN_POD_S3_ENDPOINT"],
                 prefix=f"demo-{secrets.token_hex(4)}"),
        cluster.images["trainer"], EPOCHS,
    )
    storage = job["spec"]["checkpoint"]["storage"]
    print(f"$ kubectl apply -f {os.path.relpath(JOB_FILE, config.REPO_ROOT)}  # image "
          f"{cluster.images['trainer']}, checkpoints {storage['uri']} at {storage['endpoint']}, "
          f"--epochs {EPOCHS}", flush=True)
    capacity = Capacity(cluster.env())
    lines = watch_job(api, job, NAMESPACE, capacity.preempt, capacity.add_spot_node, args.out,
                      seed=args.seed, timeout=TIMEOUT, notes=[p[2] for p in PREEMPTIONS])
    print("\n" + "\n".join(lines), flush=True)
    return 0 if lines[0].startswith("job Succeeded") else 1


def main(args: argparse.Namespace) -> int:
    keep = args.keep or os.environ.get("SPOTRUN_KIND_KEEP") == "1"
    name = kindcluster.cluster_name(os.environ)
    before = kindcluster.probe()
    print(f"spotrun demo on kind: {'reusing' if before.cluster else 'bringing up'} cluster "
          f"{name}", flush=True)
    progress, status = Progress(), 1
    try:
        status = run(args, before, progress)
    except KeyboardInterrupt:
        print("\ninterrupted: removing what the demo started", flush=True)
        status = 130
    except (subprocess.CalledProcessError, RuntimeError, TimeoutError) as err:
        print(f"hack/demo: {err}", file=sys.stderr)
    finally:
        teardown(teardown_steps(before, keep, progress.installed))
        if keep:
            print(f"kept (SPOTRUN_KIND_KEEP=1): the cluster, the operator and the job in "
                  f"{NAMESPACE}; `eval \"$(hack/cluster env)\"` to use them, "
                  "`hack/cluster down` removes it all", flush=True)
    return status
