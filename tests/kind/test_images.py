"""The project's images, built here by hack/kind/images from the repo's Dockerfiles, and run.

Containers reach hack/'s loopback-only servers (the S3 server, the API server) by sharing the
host's network (`docker run --network host`): those servers listen on 127.0.0.1 only, by
design. Pods on kind reach S3 another way (hack/README.md, kind).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spotrun import layout
from spotrun.localstore import LocalStore
from spotrun.s3store import S3Store
from spotrun.version import __version__
from spotrun_operator import injection
from tests.e2e.e2e_support import wait_for
from tests.kind import images as img
from tests.kind.kindenv import CACHE, REPO, versions

# a cold build (torch's ~4 GB from PyPI) runs inside the first test's setup
pytestmark = [pytest.mark.kind, pytest.mark.timeout(3600)]

TRAINER_UID = 1000  # trainer/Dockerfile and sidecar/Dockerfile
OPERATOR_UID = 65532  # operator/Dockerfile
TOY_TRAINER = REPO / "tests" / "integration" / "toy_trainer.py"


@pytest.fixture(scope="module")
def images(docker_engine: dict[str, str]) -> img.Images:
    return img.Images(docker_engine)


@pytest.fixture
def containers(docker_engine: dict[str, str]) -> Iterator[list[str]]:
    """Names for the test's containers; each is removed afterwards, its log printed."""
    names: list[str] = []
    yield names
    for name in names:
        logs = img.docker(docker_engine, "logs", name)
        print(f"--- docker logs {name} ---\n{logs.stdout[-2000:]}{logs.stderr[-4000:]}")
        img.docker(docker_engine, "rm", "-f", "-v", name)


def _name(containers: list[str], what: str) -> str:
    containers.append(f"spotrun-test-{what}-{uuid.uuid4().hex[:6]}")
    return containers[-1]


def _owned_dir(path: Path, uid: int = TRAINER_UID) -> Path:
    """A host folder the image's user writes (as a pod's volume would be)."""
    path.mkdir(parents=True, exist_ok=True)
    for root, dirs, files in os.walk(path):
        for entry in [
            root,
            *(os.path.join(root, d) for d in dirs),
            *(os.path.join(root, f) for f in files),
        ]:
            os.chown(entry, uid, uid)
    return path


def test_sidecar_image_has_no_torch(images: img.Images, docker_engine: dict[str, str]) -> None:
    done = img.docker(
        docker_engine,
        "run",
        "--rm",
        "--entrypoint",
        "python",
        images["sidecar"],
        "-c",
        "import spotrun.sidecar, boto3; import torch",
    )
    assert done.returncode == 1
    assert "No module named 'torch'" in done.stderr


def _sidecar(
    env: dict[str, str], image: str, name: str, directory: Path, out: Path, s3: Any, uri: str
) -> int:
    """`spotrun sidecar` from the image, detached, its checkpoint volume at ``directory`` and
    its termination message in ``out``; returns its probe port."""
    port = img.free_port()
    settings = {
        **s3.env(),
        "SPOTRUN_CHECKPOINT_DIR": "/spotrun/checkpoints",
        "SPOTRUN_STORAGE_URI": uri,
        "SPOTRUN_GRACE_SECONDS": "20",
        "SPOTRUN_SIDECAR_PORT": str(port),
        "SPOTRUN_SYNC_POLL_SECONDS": "0.2",
        "SPOTRUN_TERMINATION_MESSAGE_PATH": "/out/termination",
    }
    img.start(
        env,
        name,
        "-v",
        f"{directory}:/spotrun/checkpoints",
        "-v",
        f"{_owned_dir(out)}:/out",
        *(arg for key, value in settings.items() for arg in ("-e", f"{key}={value}")),
        image,
    )
    return port


def test_sidecar_image_uploads_to_and_restores_from_the_real_s3_server(
    images: img.Images,
    docker_engine: dict[str, str],
    containers: list[str],
    s3: Any,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in s3.env().items():  # this process reads the bucket too
        monkeypatch.setenv(key, value)
    uri = f"s3://{s3_bucket}/jobs/image"
    written = tmp_path / "node-a"
    trainer = subprocess.run(  # a trainer on the host saves steps 1 and 2 locally only
        [sys.executable, str(TOY_TRAINER), str(written), "--mb", "2", "--steps", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert trainer.returncode == 0, trainer.stderr
    step = layout.step_dirname(2)
    remote = S3Store(s3_bucket, "jobs/image", endpoint=s3.endpoint_url)

    uploader = _name(containers, "upload")
    _sidecar(
        docker_engine, images["sidecar"], uploader, _owned_dir(written), tmp_path / "out-a", s3, uri
    )
    wait_for(lambda: remote.has_manifest(step), "the sidecar container's upload of step 2")
    stopped = img.docker(docker_engine, "stop", "-t", "30", uploader)
    assert stopped.returncode == 0, stopped.stderr
    code = img.docker(docker_engine, "inspect", "-f", "{{.State.ExitCode}}", uploader).stdout
    assert code.strip() == "0"
    message = json.loads((tmp_path / "out-a" / "termination").read_text())
    assert message["step"] == 2 and message["uri"] == f"{uri}/checkpoints/{step}"

    restored = _owned_dir(tmp_path / "node-b")  # a new node: empty disk
    restorer = _name(containers, "restore")
    port = _sidecar(
        docker_engine, images["sidecar"], restorer, restored, tmp_path / "out-b", s3, uri
    )
    wait_for(
        lambda: img.served(f"http://127.0.0.1:{port}/startupz") is not None,
        "the restoring sidecar container's startup probe",
    )
    for path in (layout.TENSORS, layout.STRUCTURE):
        original = (LocalStore(written).path(step) / path).read_bytes()
        assert (LocalStore(restored).path(step) / path).read_bytes() == original


def test_spotrun_exec_from_the_sidecar_image_runs_in_an_image_without_spotrun(
    images: img.Images,
    docker_engine: dict[str, str],
    containers: list[str],
    tmp_path: Path,
) -> None:
    shared = tmp_path / "spotrun-bin"  # the operator's emptyDir for the injected entrypoint
    shared.mkdir()
    shared.chmod(0o777)
    mount = f"{shared}:{injection.DIR}"
    copy, *copy_args = injection.COPY_COMMAND
    copied = img.docker(
        docker_engine,
        "run",
        "--rm",
        "-v",
        mount,
        "--entrypoint",
        copy,
        images["sidecar"],
        *copy_args,
    )
    assert copied.returncode == 0, copied.stderr
    plain = images["python"]  # Debian's python, no spotrun in it
    assert (
        img.docker(
            docker_engine,
            "run",
            "--rm",
            plain,
            "sh",
            "-c",
            "command -v spotrun || python -c 'import spotrun'",
        ).returncode
        != 0
    )

    ran = img.docker(
        docker_engine,
        "run",
        "--rm",
        "--user",
        str(TRAINER_UID),
        "-v",
        f"{mount}:ro",
        plain,
        injection.ENTRYPOINT,
        "--",
        "sh",
        "-c",
        "echo from the plain image; exit 7",
    )
    assert (ran.returncode, ran.stdout) == (7, "from the plain image\n"), ran.stderr

    # SIGTERM to the entrypoint (docker stop) reaches the command, whose handler exits 42
    name = _name(containers, "exec")
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(42))\n"
        "print('ready', flush=True)\n"
        "time.sleep(300)\n"
    )
    img.start(
        docker_engine,
        name,
        "-v",
        f"{mount}:ro",
        plain,
        injection.ENTRYPOINT,
        "--",
        "python",
        "-c",
        script,
        host_network=False,
    )
    wait_for(
        lambda: "ready" in img.docker(docker_engine, "logs", name).stdout,
        "the command to start under spotrun-exec",
    )
    assert img.docker(docker_engine, "stop", "-t", "60", name).returncode == 0
    code = img.docker(docker_engine, "inspect", "-f", "{{.State.ExitCode}}", name).stdout
    assert code.strip() == "42"


def test_trainer_image_trains_the_digits_example_as_uid_1000(
    images: img.Images, docker_engine: dict[str, str], tmp_path: Path
) -> None:
    ran = img.docker(
        docker_engine,
        "run",
        "--rm",
        "-e",
        "SPOTRUN_CHECKPOINT_DIR=/spotrun/checkpoints",
        images["trainer"],
        "sh",
        "-c",
        "id -u && python examples/digits/train.py --epochs 1 --save-every 10 "
        f"&& ls /spotrun/checkpoints/{layout.CHECKPOINTS}",
        timeout=900,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    lines = ran.stdout.splitlines()
    assert lines[0] == str(TRAINER_UID)
    assert "epoch 0: step" in ran.stderr and "test accuracy" in ran.stderr
    assert any(line.startswith("step-") for line in lines[1:]), ran.stdout


def _kubectl() -> str:
    kubectl = CACHE / "bin" / f"kubernetes-{versions()['KUBERNETES_VERSION']}" / "kubectl"
    return str(kubectl) if kubectl.exists() else shutil.which("kubectl") or "kubectl"


def test_operator_image_runs_as_non_root_serves_metrics_and_reconciles(
    images: img.Images,
    docker_engine: dict[str, str],
    containers: list[str],
    cluster: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    image = images["operator"]
    version = img.docker(
        docker_engine, "run", "--rm", "--entrypoint", "spotrun", image, "--version"
    )
    assert version.returncode == 0 and __version__ in version.stdout, version

    kubectl = [_kubectl(), "--kubeconfig", cluster.kubeconfig]
    for args in (
        ["apply", "-f", str(REPO / "manifests" / "crd.yaml")],
        [
            "wait",
            "--for",
            "condition=established",
            "--timeout",
            "60s",
            "crd/resumabletrainingjobs.spotrun.dev",
        ],
    ):
        done = subprocess.run(
            [*kubectl, *args], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr

    kubeconfig = img.self_contained_kubeconfig(cluster.kubeconfig, tmp_path / "kubeconfig")
    port = img.free_port()
    name = _name(containers, "operator")
    img.start(
        docker_engine,
        name,
        "-v",
        f"{kubeconfig}:/etc/spotrun/kubeconfig:ro",
        "-e",
        "KUBECONFIG=/etc/spotrun/kubeconfig",
        image,
        "--namespace",
        namespace,
        "--metrics-port",
        str(port),
    )
    metrics = wait_for(
        lambda: img.served(f"http://127.0.0.1:{port}/metrics"), "the operator container's /metrics"
    )
    assert "spotrun_reconcile_duration_seconds" in metrics
    assert img.docker(docker_engine, "exec", name, "id", "-u").stdout.strip() == str(OPERATOR_UID)
    # /metrics is served just before the start line is printed: wait for the line
    (first, *_) = wait_for(
        lambda: img.docker(docker_engine, "logs", name).stderr.splitlines(),
        "the operator container's first log line",
    )
    assert first.startswith(f"spotrun operator {__version__} starting: watching {namespace}")

    # it reconciles through the API server: a job gets its first attempt's pod, and a deleted
    # job goes (the operator lets go of its finalizer)
    job = {
        "apiVersion": "spotrun.dev/v1alpha1",
        "kind": "ResumableTrainingJob",
        "metadata": {"name": "from-the-image", "namespace": namespace},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "trainer",
                            "image": "spotrun.dev/process:local",  # the process node's
                            "command": ["python", "-c", "import time; time.sleep(600)"],
                        }
                    ]
                }
            },
            "checkpoint": {"storage": {"uri": "s3://spotrun-test/from-the-image"}},
        },
    }
    manifest = tmp_path / "job.json"
    manifest.write_text(json.dumps(job))
    assert (
        subprocess.run(
            [*kubectl, "create", "-f", str(manifest)], check=False, capture_output=True, timeout=60
        ).returncode
        == 0
    )

    def pods() -> str:
        return subprocess.run(
            [
                *kubectl,
                "-n",
                namespace,
                "get",
                "pods",
                "-l",
                "spotrun.dev/job=from-the-image",
                "-o",
                "name",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout

    wait_for(pods, "the operator container to create the job's pod")
    deleted = subprocess.run(
        [*kubectl, "-n", namespace, "delete", "rtj", "from-the-image", "--timeout", "120s"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert deleted.returncode == 0, deleted.stderr


def test_images_are_tagged_by_version_and_inputs_and_reused(
    images: img.Images, docker_engine: dict[str, str]
) -> None:
    for name in ("operator", "sidecar", "trainer"):
        assert images[name].startswith(f"spotrun.local/{name}:{__version__}-"), images
    if os.environ.get("SPOTRUN_IMAGES_FROM") == "pull":  # the Dockerfiles' default bases
        assert images["python"].startswith("spotrun.local/python:pulled-"), images
        assert images["torch"].startswith("spotrun.local/torch:pulled-"), images
    else:
        assert images["python"].startswith(
            f"spotrun.local/python:{versions()['DEBIAN_PYTHON_VERSION']}-bookworm-"
        )
        assert images["torch"].startswith(f"spotrun.local/torch:{versions()['TORCH_VERSION']}-")
    again = subprocess.run(
        [str(REPO / "hack" / "kind" / "images"), "operator"],
        env=docker_engine,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert f"{images['operator']}: already built" in again.stderr
    assert "building" not in again.stderr
