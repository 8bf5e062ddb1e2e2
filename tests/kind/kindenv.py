"""Where the kind tier's tests find hack/kind, the cache and the pinned versions; a cluster
as hack/kind/up brings it up."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[2]
KIND_DIR = REPO / "hack" / "kind"
CACHE = Path(os.environ.get("SPOTRUN_CACHE", Path.home() / ".cache" / "spotrun"))


def versions() -> dict[str, str]:
    """hack/versions.env, hack/kind/versions.env and images.env as one dict (KEY=value lines)."""
    pairs = {}
    for env_file in (
        KIND_DIR.parent / "versions.env",
        KIND_DIR / "versions.env",
        KIND_DIR / "images.env",
    ):
        for line in env_file.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                pairs[key] = value
    return pairs


NAME = os.environ.get("SPOTRUN_KIND_CLUSTER", "spotrun")
# A stock node image (where images can be pulled): hack/kind builds none of the node's parts.
RWX_PATH = (
    "/mnt/spotrun-rwx"  # hack/kind/kindconfig.py's: every worker mounts KindCluster.rwx there
)
STOCK_NODE_IMAGE = os.environ.get("SPOTRUN_KIND_NODE_IMAGE", "")
VERSIONS = versions()
KUBECTL = CACHE / "bin" / f"kubernetes-{VERSIONS['KUBERNETES_VERSION']}" / "kubectl"
KIND = CACHE / "bin" / f"kind-{VERSIONS['KIND_VERSION']}" / "kind"
HELM = CACHE / "bin" / f"helm-{VERSIONS['HELM_VERSION']}" / "helm"


T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    """probe() every 2 s until it returns something true (an empty list is not found either)."""
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(2)
    return found


def run(
    *args: str | Path,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: int = 600,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class KindCluster:
    env: dict[str, str]  # os.environ + KUBECONFIG + DOCKER_HOST

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = run(KUBECTL, *args, env=self.env, stdin=stdin)
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    @property
    def rwx(self) -> Path:
        """The host's directory every worker mounts at kindconfig.RWX_PATH (hack/kind/up: beside
        the kubeconfig)."""
        return Path(self.env["KUBECONFIG"]).parent / "rwx"

    def delete_namespace(self, namespace: str) -> None:
        """A test's namespace deleted in seconds: the namespace first (a terminating namespace
        takes no new pod, so the operator starts no next attempt), then its pods with a 1 s
        grace instead of their own (an opted-in trainer trains on through a 60 s one), then the
        wait until the namespace is gone."""
        self.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=false")
        self.kubectl("-n", namespace, "delete", "pods", "--all", "--grace-period=1", "--wait=false")
        self.kubectl("wait", "--for=delete", f"namespace/{namespace}", "--timeout=300s")

    def restore_workers(self) -> None:
        """hack/kind/add-node for every worker whose container a preemption left stopped: a test
        that failed between its preemption and its add-node leaves the next ones the cluster
        they expect."""
        stopped = self.docker(
            "ps",
            "--all",
            "--filter",
            f"name=^{NAME}-worker",
            "--filter",
            "status=exited",
            "--format",
            "{{.Names}}",
        ).split()
        for node in stopped:
            done = run(KIND_DIR / "add-node", node, env=self.env, timeout=900)
            assert done.returncode == 0, f"hack/kind/add-node {node}:\n{done.stderr}"

    def docker(self, *args: str, timeout: int = 600) -> str:
        done = run("docker", *args, env=self.env, timeout=timeout)
        assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
        return done.stdout
