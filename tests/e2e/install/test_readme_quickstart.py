"""The README's quickstart, command by command, on the test cluster: helm install, the S3
Secret, the example job, `kubectl get rtj -w` until it ends, `kubectl describe`; on the local
cluster its spot node is taken away mid-run with `hack/cluster preempt NODE`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import wait_for
from install_support import EXAMPLES, REPO, Tools, delete_jobs_and_wait, example_job

from localcluster import config

sys.path.insert(0, str(REPO / "tests" / "unit"))
from test_readme_commands import readme_command as _command  # noqa: E402

pytestmark = pytest.mark.e2e

# The process node shares the host network: this test's own ports (README ports are defaults).
PORTS = ("--set", "ports.health=18981", "--set", "ports.metrics=18982")


def test_readme_quickstart_as_written(
    cluster: Any, tools: Tools, namespace: str, s3: Any, s3_bucket: str, tmp_path: Path
) -> None:
    # kubectl's namespace: the test's (the README's commands name none, i.e. the context's).
    kubeconfig = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    for ctx in kubeconfig["contexts"]:
        ctx["context"]["namespace"] = namespace
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "kubeconfig"),
           "PATH": f"{tools.kubectl_bin.parent}:{tools.helm_bin.parent}:{os.environ['PATH']}"}

    def run(argv: list[str]) -> str:
        done = subprocess.run(argv, cwd=REPO, env=env, text=True, capture_output=True,
                              timeout=300)
        assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout}{done.stderr}"
        return done.stdout

    helm = _command("helm install spotrun charts/")  # the clone's (the published one: no registry)
    assert helm[helm.index("--namespace") + 1] == "spotrun-system"
    run([*helm, *PORTS, "--take-ownership", "--wait", "--timeout", "180s"])
    try:
        secret = _command("kubectl create secret")
        keys = {"AWS_ACCESS_KEY_ID": s3.access_key_id,
                "AWS_SECRET_ACCESS_KEY": s3.secret_access_key}
        run([a if not a.endswith("=...") else a.replace("...", keys[a.split("=")[1]])
             for a in secret])

        # "point checkpoint.storage of the example at your bucket": the user's edited copy
        # (60 epochs: still training when the status first names a checkpoint, even when
        # the machine is quiet and a step takes 5 ms).
        apply = _command("kubectl apply -f manifests/examples/job.yaml")
        mine = tmp_path / "job.yaml"
        job = example_job("digits", s3_bucket, s3.endpoint_url, epochs=60, port=18901,
                          path=EXAMPLES / "job.yaml")
        mine.write_text(yaml.safe_dump(job))
        run([*apply[:-1], str(mine)])

        watch = subprocess.Popen(_command("kubectl get rtj -w"), cwd=REPO, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        rows: list[str] = []
        assert watch.stdout is not None
        try:
            preempted = cluster.process_node is None  # only the local cluster can preempt
            for line in watch.stdout:
                rows.append(line.rstrip())
                if not preempted and " Running " in line and _checkpointed(cluster, namespace):
                    node = wait_for(lambda: _running_node(cluster, namespace), "digits-1 to run")
                    argv = _command("hack/cluster preempt")
                    # the README's command; its cluster here is the process node
                    env_preempt = {**env, "SPOTRUN_STATE_DIR": str(cluster.state_dir),
                                   "SPOTRUN_CLUSTER": "process"}
                    subprocess.run([str(config.HACK_DIR / "cluster"), *argv[1:-1], node],
                                   env=env_preempt, check=True, timeout=120,
                                   capture_output=True)
                    cluster.process_node.add_node("spot")
                    preempted = True
                if " Succeeded " in line or " Failed " in line:
                    break
        finally:
            watch.kill()
            watch.wait()
        print("\n".join(rows))
        header = rows[0].split()
        assert header[:2] == ["NAME", "PHASE"] and "PREEMPTIONS" in header, rows[0]
        # -w prints later rows in widths of their own: name and phase first, then progress
        # and checkpoint (which may hold spaces), preemptions and age last.
        last = rows[-1].split()
        assert last[:2] == ["digits", "Succeeded"], rows
        if cluster.process_node is not None:
            assert last[-2] == "1", rows

        described = run(_command("kubectl describe rtj digits"))
        assert "Events:" in described and "Completed" in described, described
        if cluster.process_node is not None:
            assert "Preempted" in described and "restores from step" in described, described
    finally:
        delete_jobs_and_wait(cluster.api, namespace)
        run(["helm", "uninstall", "spotrun", "--namespace", "spotrun-system", "--wait"])
        run(["kubectl", "delete", "namespace", "spotrun-system", "--timeout=120s"])


def _checkpointed(cluster: Any, namespace: str) -> bool:
    """The job's status names a checkpoint (the sidecar reports them while it runs)."""
    from kubernetes import client

    job = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        "spotrun.dev", "v1alpha1", namespace, "resumabletrainingjobs", "digits")
    return bool((job.get("status", {}).get("lastCheckpoint") or {}).get("step"))


def _running_node(cluster: Any, namespace: str) -> str | None:
    pod = cluster.core().read_namespaced_pod("digits-1", namespace)
    if pod.status.phase == "Running" and not pod.metadata.deletion_timestamp:
        return str(pod.spec.node_name)
    return None
