"""README.md's Quickstart as a user runs it, on kind's real kubelets, then `helm upgrade` to a
newer chart and operator image with the job running, and `helm uninstall`.

The README's commands are read from README.md (tests/unit/test_readme_commands.py's
readme_command), so a change there changes what runs here:
- `helm install spotrun charts/spotrun --namespace spotrun-system --create-namespace` with no
  image values: the chart's default `ghcr.io/spotrun/operator:<appVersion>` resolves through the
  ghcr.io mirror `hack/kind/registry up` writes into every node. The only flags added are
  `--take-ownership` (another test may have made the CRD with `kubectl apply`) and `--wait`.
- `kubectl create secret generic s3-credentials ...` with hack/kind/s3's keys for the `...`.
- `kubectl apply -f manifests/examples/job.yaml` of a copy with what the README tells a user to
  change: `checkpoint.storage` pointed at the bucket (a prefix of this run's) and the endpoint
  (the S3 server as pods reach it); the test also sets --epochs (EPOCHS: still training through
  the upgrade and the preemption). The image stays `ghcr.io/spotrun/trainer:<version>`.
- `kubectl get rtj -w` runs from the submit to the end; `kubectl describe rtj digits` after.
- `hack/cluster preempt NODE` and `hack/cluster add-node NODE` (README's "hack/cluster" block)
  on the spot worker, with SPOTRUN_CLUSTER=kind; no notice, as written.

The README's upgrade sentence ("`helm upgrade spotrun` to a newer chart upgrades the CRD in place
and keeps running jobs running") is run as a user gets it: the clone's chart with a higher
version and its appVersion set to the pushed build's tag (`0.1.0-<hash>`), so the operator's
default image changes to `ghcr.io/spotrun/operator:0.1.0-<hash>` (also served by the mirror)
from the `0.1.0` tag it was installed with: a new operator pod from another reference, while
attempt 1 trains. Then the preemption, handled by the new operator, and `helm uninstall`, which
removes the operator and its RBAC and keeps the CRD (`helm.sh/resource-policy: keep`).

The kubeconfig's context names the job's namespace (the README's commands name none).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from spotrun.version import __version__
from tests.kind import chart
from tests.kind.images import registry_manifest
from tests.kind.jobs import EXAMPLES, SPOT_WORKER, STEPS_PER_EPOCH, Job, committed_steps
from tests.kind.kindenv import HELM, KUBECTL, REPO, KindCluster, run, wait_for
from tests.unit.test_readme_commands import README, readme_command

pytestmark = [pytest.mark.kind, pytest.mark.timeout(2400)]

NAMESPACE = "quickstart-kind"
EPOCHS = 100  # ~100 s of training here: the upgrade and the preemption land mid-run
CRD = "resumabletrainingjobs.spotrun.dev"
RELEASE_LABEL = f"app.kubernetes.io/instance={chart.RELEASE}"
UPGRADE_SENTENCE = re.compile(
    r"`(helm upgrade spotrun)` to a newer chart upgrades the CRD in place and keeps running "
    r"jobs running"
)


def readme_upgrade() -> list[str]:
    """The command of the README's sentence on `helm upgrade`, as long as it claims what this
    test checks."""
    found = UPGRADE_SENTENCE.search(" ".join(README.read_text().split()))
    assert found, "README.md no longer says helm upgrade upgrades the CRD and keeps jobs running"
    return found[1].split()


def with_keys(argv: list[str], keys: dict[str, str]) -> list[str]:
    """The README's `--from-literal=NAME=...` arguments with the value of NAME in KEYS."""
    filled = []
    for arg in argv:
        if arg.endswith("=..."):
            name = arg.removesuffix("=...").split("=", 1)[1]
            arg = arg.replace("...", keys[name])
        filled.append(arg)
    return filled


def users_job(s3: dict[str, str], prefix: str, epochs: int) -> dict[str, Any]:
    """manifests/examples/job.yaml with checkpoint.storage at the bucket (under PREFIX) and the
    pods' endpoint, as the README says to change it, and EPOCHS."""
    job: dict[str, Any] = yaml.safe_load((EXAMPLES / "job.yaml").read_text())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"ghcr.io/spotrun/trainer:{__version__}", container["image"]
    assert container["command"][-2] == "--epochs", container["command"]
    container["command"][-1] = str(epochs)
    storage = job["spec"]["checkpoint"]["storage"]
    storage["uri"] = f"s3://{s3['SPOTRUN_TEST_BUCKET']}/{prefix}"
    storage["endpoint"] = s3["SPOTRUN_POD_S3_ENDPOINT"]
    return job


def newer_chart(target: Path, app_version: str) -> Path:
    """charts/spotrun copied to TARGET as a newer release: the patch version bumped, appVersion
    (the operator's default image tag) set to APP_VERSION."""
    shutil.copytree(REPO / "charts" / "spotrun", target)
    meta = yaml.safe_load((target / "Chart.yaml").read_text())
    major, minor, patch = meta["version"].split("-")[0].split(".")
    meta["version"] = f"{major}.{minor}.{int(patch) + 1}"
    meta["appVersion"] = app_version
    (target / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return target


def user_kubeconfig(source: str, target: Path, namespace: str) -> Path:
    """The cluster's kubeconfig with NAMESPACE as every context's namespace."""
    config = yaml.safe_load(Path(source).read_text())
    for ctx in config["contexts"]:
        ctx["context"]["namespace"] = namespace
    target.write_text(yaml.safe_dump(config))
    return target


def preemptions_of(row: str, header: str) -> str:
    """The PREEMPTIONS cell of a `kubectl get rtj -w` ROW: -w prints later rows in widths of
    their own, so by position from the end (AGE last; NODES before it, empty for one node)."""
    columns = header.split()
    assert columns[-3:] == ["PREEMPTIONS", "NODES", "AGE"], header
    return row.split()[-2]


class Watch:
    """`kubectl get rtj -w` left running in a terminal: the rows it printed so far."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.rows: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.rows.append(line.rstrip())

    def row(self, phase: str) -> str | None:
        """The first row of the job in PHASE; None while there is none."""
        return next((r for r in self.rows[1:] if r.split()[1:2] == [phase]), None)

    def stop(self) -> list[str]:
        self.proc.kill()
        self.proc.wait()
        self.reader.join(timeout=10)
        return self.rows


@contextmanager
def watching(argv: list[str], env: dict[str, str]) -> Iterator[Watch]:
    watch = Watch(argv, env)
    try:
        yield watch
    finally:
        print("\n".join(watch.stop()))


class User:
    """Commands as a user types them: from the clone, kubectl and helm on PATH, the kubeconfig's
    namespace the job's."""

    def __init__(self, cluster: KindCluster, kubeconfig: Path) -> None:
        self.cluster = cluster
        self.env = {
            **cluster.env,
            "KUBECONFIG": str(kubeconfig),
            "PATH": f"{KUBECTL.parent}:{HELM.parent}:{cluster.env['PATH']}",
            "SPOTRUN_CLUSTER": "kind",
        }

    def run(self, *argv: str, timeout: int = 900) -> str:
        done = subprocess.run(
            argv, cwd=REPO, env=self.env, text=True, capture_output=True, timeout=timeout
        )
        assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout}{done.stderr}"
        return done.stdout

    def json(self, *argv: str) -> Any:
        return json.loads(self.run("kubectl", *argv, "-o", "json"))

    def operator_pod(self) -> dict[str, Any] | None:
        """The one running, ready operator pod not being deleted; None otherwise."""
        pods = self.json("-n", chart.NAMESPACE, "get", "pods", "-l", RELEASE_LABEL)["items"]
        ready = [
            p
            for p in pods
            if not p["metadata"].get("deletionTimestamp")
            and all(s.get("ready") for s in p["status"].get("containerStatuses") or [{}])
        ]
        return ready[0] if len(pods) == 1 and ready else None

    def release_objects(self) -> list[str]:
        """The release's Deployment and ClusterRoles, as kind/name."""
        listed = self.json("get", "deployments,clusterroles", "-A", "-l", RELEASE_LABEL)
        return [f"{o['kind']}/{o['metadata']['name']}" for o in listed["items"]]


def image_digest(pod: dict[str, Any]) -> str:
    (status,) = pod["status"]["containerStatuses"]
    return str(status["imageID"]).rpartition("@")[2]


def crd(user: User) -> dict[str, Any] | None:
    listed = user.json("get", "crd", "--field-selector", f"metadata.name={CRD}")["items"]
    return listed[0] if listed else None


def test_readme_quickstart_then_helm_upgrade_mid_run_then_uninstall(
    kind_cluster: KindCluster, pushed: dict[str, str], kind_s3: dict[str, str], tmp_path: Path
) -> None:
    kubeconfig = user_kubeconfig(kind_cluster.env["KUBECONFIG"], tmp_path / "kc", NAMESPACE)
    user = User(kind_cluster, kubeconfig)
    crd_before = crd(user)
    operator_digest = registry_manifest(pushed["operator"])[1]
    try:
        installed = install_as_written(user, operator_digest)
        crd_installed = crd(user)
        assert crd_installed is not None
        kind_cluster.kubectl("create", "namespace", NAMESPACE)
        upgraded = run_the_job(user, kind_s3, tmp_path, installed, operator_digest, pushed)
        delete_namespace(kind_cluster)  # while the operator runs: it lifts its finalizers

        crd_upgraded = crd(user)
        assert crd_upgraded is not None
        assert crd_upgraded["metadata"]["uid"] == crd_installed["metadata"]["uid"], (
            "the CRD was deleted and created again"
        )
        labels = crd_upgraded["metadata"]["labels"]
        assert labels["helm.sh/chart"] == upgraded["chart"], labels
        assert labels["app.kubernetes.io/version"] == upgraded["appVersion"], labels

        # helm uninstall: the operator and its RBAC go, the CRD stays
        assert user.release_objects(), "no Deployment or ClusterRole of the release to remove"
        user.run("helm", "uninstall", chart.RELEASE, "--namespace", chart.NAMESPACE, "--wait")
        assert user.release_objects() == []
        kept = crd(user)
        assert kept is not None and kept["metadata"]["uid"] == crd_installed["metadata"]["uid"]
    finally:  # not asserted: a cleanup failure must not hide the test's own
        try:
            kind_cluster.restore_workers()
        finally:
            delete_namespace(kind_cluster)
            chart.uninstall(kind_cluster)
            if crd_before is None:  # as found: this test's install made the CRD
                run(
                    KUBECTL,
                    "delete",
                    "crd",
                    CRD,
                    "--ignore-not-found",
                    "--timeout=120s",
                    env=kind_cluster.env,
                )


def delete_namespace(cluster: KindCluster) -> None:
    run(
        KUBECTL,
        "delete",
        "namespace",
        NAMESPACE,
        "--ignore-not-found",
        "--timeout=300s",
        env=cluster.env,
    )


def install_as_written(user: User, operator_digest: str) -> dict[str, Any]:
    """The README's helm install; the operator pod, running the chart's default image (the
    release's reference, the pushed build's digest)."""
    helm = readme_command("helm install spotrun charts/")
    assert helm[helm.index("--namespace") + 1] == chart.NAMESPACE, helm
    user.run(*helm, "--take-ownership", "--wait", "--timeout", "10m")
    installed = wait_for("the operator to run", user.operator_pod, 300)
    image = installed["spec"]["containers"][0]["image"]
    assert image == f"ghcr.io/spotrun/operator:{__version__}", image
    assert image_digest(installed) == operator_digest
    return installed


def run_the_job(
    user: User,
    s3: dict[str, str],
    tmp_path: Path,
    installed: dict[str, Any],
    operator_digest: str,
    pushed: dict[str, str],
) -> dict[str, str]:
    """The README's Secret, example job, `get rtj -w` and `describe`, with helm upgrade and a
    preemption while it runs; the newer chart's name-version and appVersion."""
    upgrade = readme_upgrade()
    keys = {k: s3[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    user.run(*with_keys(readme_command("kubectl create secret generic s3-credentials"), keys))
    job = Job(user.cluster, s3, NAMESPACE)
    mine = tmp_path / "job.yaml"
    mine.write_text(yaml.safe_dump(users_job(s3, job.prefix, EPOCHS)))
    apply = readme_command("kubectl apply -f manifests/examples/job.yaml")
    user.run(*apply[:-1], str(mine))

    with watching(readme_command("kubectl get rtj -w"), user.env) as watch:
        node = wait_for("digits-1 to run", lambda: job.running_node("digits-1"), 900)
        assert node == SPOT_WORKER, "the example runs on the spot worker"
        wait_for("a periodic checkpoint in S3", lambda: committed_steps(s3, job.prefix), 300)
        trainer = job.pod("digits-1")
        assert attempt_of(job.status()) == ("Running", 1, 0)

        # helm upgrade as the README's sentence has it, to a newer chart whose default
        # operator image is the build's own tag
        build_tag = pushed["operator"].rpartition(":")[2]
        assert build_tag != __version__, pushed["operator"]
        newer = newer_chart(tmp_path / "spotrun", build_tag)
        user.run(
            *upgrade,
            str(newer),
            "--namespace",
            chart.NAMESPACE,
            "--wait",
            "--timeout",
            "10m",
        )
        upgraded = wait_for(
            "the new operator to run",
            lambda: (
                (p := user.operator_pod())
                and p["metadata"]["uid"] != installed["metadata"]["uid"]
                and p
            ),
            300,
        )
        image = upgraded["spec"]["containers"][0]["image"]
        assert image == f"ghcr.io/spotrun/operator:{build_tag}", image
        assert image_digest(upgraded) == operator_digest
        # the attempt outlived the upgrade in its first pod, no container restarted
        still = job.pod("digits-1")
        assert still["metadata"]["uid"] == trainer["metadata"]["uid"]
        assert restart_counts(still) == [0] * len(restart_counts(still)), still["status"]
        assert attempt_of(job.status()) == ("Running", 1, 0)

        # the spot node preempted with the README's hack/cluster command
        preempt = readme_command("hack/cluster preempt")
        assert preempt[-1] == "NODE", preempt
        user.run(*preempt[:-1], SPOT_WORKER)
        wait_for("attempt 2", lambda: job.status().get("attempt") == 2, 300)
        add_node = readme_command("hack/cluster add-node")
        assert add_node[-1] == "NODE", add_node
        user.run(*add_node[:-1], SPOT_WORKER)
        wait_for("the job's last row", lambda: watch.row("Succeeded") or watch.row("Failed"), 900)

    header, last = watch.rows[0], watch.rows[-1]
    assert header.split()[:2] == ["NAME", "PHASE"], header
    assert last.split()[:2] == ["digits", "Succeeded"], watch.rows
    assert preemptions_of(last, header) == "1", watch.rows
    status = job.status()
    assert (status["attempt"], status["preemptions"], status["failures"]) == (2, 1, 0), status
    assert status["lastCheckpoint"]["step"] == EPOCHS * STEPS_PER_EPOCH, status

    described = user.run(*readme_command("kubectl describe rtj digits"))
    for shown in ("Events:", "Preempted", "Restoring", "restores from step", "Completed"):
        assert shown in described, f"no {shown} in kubectl describe:\n{described}"

    # the new operator handled the preemption and the end, and made only attempt 2's pod
    log = user.run("kubectl", "-n", chart.NAMESPACE, "logs", upgraded["metadata"]["name"])
    assert f"{NAMESPACE}/digits: Completed" in log, log[-3000:]
    assert f"created pod {NAMESPACE}/digits-2" in log, log[-3000:]
    assert f"created pod {NAMESPACE}/digits-1" not in log, log[-3000:]
    meta = yaml.safe_load((newer / "Chart.yaml").read_text())
    return {"chart": f"{meta['name']}-{meta['version']}", "appVersion": meta["appVersion"]}


def attempt_of(status: dict[str, Any]) -> tuple[str, int, int]:
    return status.get("phase", ""), status.get("attempt", 0), status.get("preemptions", 0)


def restart_counts(pod: dict[str, Any]) -> list[int]:
    statuses = pod["status"]["containerStatuses"] + pod["status"].get("initContainerStatuses", [])
    return [s["restartCount"] for s in statuses]
