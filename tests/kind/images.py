"""Helpers of the image tests: hack/kind/images, `docker` calls, and what a container needs to
reach the loopback-only servers of hack/ (the S3 server, the API server)."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.kind.kindenv import KIND_DIR


def build(env: dict[str, str], *names: str) -> dict[str, str]:
    """hack/kind/images NAME...: {name: reference} of every image it built or reused."""
    done = subprocess.run(
        [str(KIND_DIR / "images"), *names],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert done.returncode == 0, f"hack/kind/images failed:\n{done.stderr[-4000:]}"
    return dict(line.split("=", 1) for line in done.stdout.split())


class Images:
    """References of the built images, each built (hack/kind/images NAME) when first asked for,
    so a test waits only for the images it runs."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.refs: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        if name not in self.refs:
            self.refs.update(build(self.env, name))
        return self.refs[name]


def docker(
    env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`docker ARGS` on the test's engine; never raises on a non-zero exit (tests assert it)."""
    return subprocess.run(
        ["docker", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def start(env: dict[str, str], name: str, *args: str, host_network: bool = True) -> None:
    """`docker run -d --name NAME [--network host] ARGS`: a container the test stops itself."""
    network = ["--network", "host"] if host_network else []
    started = docker(env, "run", "-d", "--name", name, *network, *args)
    assert started.returncode == 0, started.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def served(url: str) -> str | None:
    """The body of a GET answered 200; None while nothing answers or the answer is an error."""
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return str(answer.read().decode())
    except (urllib.error.HTTPError, OSError):
        return None


def self_contained_kubeconfig(source: str, target: Path) -> Path:
    """A copy of the kubeconfig at ``source`` with its certificate files inlined, readable by any
    uid: a container gets this one file (the operator image runs as uid 65532)."""
    config: dict[str, Any] = yaml.safe_load(Path(source).read_text())
    inline = {
        "certificate-authority": "certificate-authority-data",
        "client-certificate": "client-certificate-data",
        "client-key": "client-key-data",
    }
    for entry in [c["cluster"] for c in config["clusters"]] + [u["user"] for u in config["users"]]:
        for key, data_key in inline.items():
            if key in entry:
                entry[data_key] = base64.b64encode(Path(entry.pop(key)).read_bytes()).decode()
    target.write_text(yaml.safe_dump(config))
    target.chmod(0o644)
    return target


def registry_manifest(reference: str) -> tuple[dict[str, Any], str]:
    """(the OCI manifest, its digest) the kind registry serves for HOST/REPOSITORY:TAG (what
    hack/kind/registry push printed)."""
    host, _, path = reference.partition("/")
    repository, tag = path.rsplit(":", 1)
    request = urllib.request.Request(
        f"http://{host.replace('localhost', '127.0.0.1')}/v2/{repository}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        manifest: dict[str, Any] = json.load(answer)
        return manifest, str(answer.headers["Docker-Content-Digest"])


def pod_image_digest(pod: dict[str, Any], container: str) -> str:
    """The digest of the image CONTAINER (or init container) of POD runs, as its kubelet says."""
    statuses = pod["status"].get("containerStatuses", []) + pod["status"].get(
        "initContainerStatuses", []
    )
    (found,) = [s for s in statuses if s["name"] == container]
    return str(found["imageID"]).rpartition("@")[2]
