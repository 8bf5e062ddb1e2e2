"""Helpers of the e2e tier: waiting on conditions (never sleeping in their place) and pods."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

T = TypeVar("T")

# The process node records images and never pulls them; on an external cluster (kind) set
# SPOTRUN_E2E_IMAGE to an image with python and the kubernetes client.
IMAGE = os.environ.get("SPOTRUN_E2E_IMAGE", "spotrun.dev/process:local")

SPOT_TOLERATION = {
    "key": "kubernetes.azure.com/scalesetpriority",
    "operator": "Equal",
    "value": "spot",
    "effect": "NoSchedule",
}


@contextmanager
def allowing(status: int) -> Iterator[None]:
    """Let the API's answer ``status`` pass (409 to a create: it exists; 404 to a delete or a
    patch: it is gone); any other ApiException is raised."""
    try:
        yield
    except ApiException as err:
        if err.status != status:
            raise


def wait_for(
    check: Callable[[], T | None], what: str, timeout: float = 60.0, interval: float = 0.2
) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def pod(
    name: str,
    containers: list[dict[str, Any]],
    init_containers: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A Pod manifest; every container gets ``IMAGE`` unless it names one."""
    for c in containers + (init_containers or []):
        c.setdefault("image", IMAGE)
    body: dict[str, Any] = {"containers": containers, **spec}
    if init_containers:
        body["initContainers"] = init_containers
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": body}


def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


def read_pod(core: client.CoreV1Api, namespace: str, name: str) -> Any | None:
    try:
        return core.read_namespaced_pod(name, namespace)
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def phase_is(core: client.CoreV1Api, namespace: str, name: str, *phases: str) -> Any | None:
    p = read_pod(core, namespace, name)
    return p if p is not None and p.status.phase in phases else None


def condition(obj: Any, kind: str) -> Any | None:
    for c in obj.status.conditions or []:
        if c.type == kind:
            return c
    return None


class PodHistory:
    """Every version of one pod seen through a watch, until it is DELETED."""

    def __init__(self, core: client.CoreV1Api, namespace: str, name: str) -> None:
        self.versions: list[Any] = []
        self.deleted = threading.Event()
        self._watch = watch.Watch()
        self._thread = threading.Thread(
            target=self._run, args=(core, namespace, name), daemon=True
        )
        self._thread.start()

    def _run(self, core: client.CoreV1Api, namespace: str, name: str) -> None:
        stream = self._watch.stream(
            core.list_namespaced_pod,
            namespace,
            field_selector=f"metadata.name={name}",
            timeout_seconds=300,
        )
        for event in stream:
            self.versions.append(event["object"])
            if event["type"] == "DELETED":
                self.deleted.set()
                self._watch.stop()
                return

    def wait_deleted(self, timeout: float) -> None:
        if not self.deleted.wait(timeout):
            raise AssertionError(f"pod not deleted within {timeout:.0f}s")

    def last_before_deletion(self) -> Any:
        return self.versions[-1]
