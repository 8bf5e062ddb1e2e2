"""All Kubernetes API calls of the operator (the kubernetes client, raw JSON dicts)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from .builders import FINALIZER, LABEL_JOB
from .coalesce import Fresh
from .models import GROUP, KIND, PLURAL, VERSION

log = logging.getLogger("spotrun_operator")


class Conflict(Exception):
    """The object changed since it was read; reconcile again from a fresh read."""


class Refused(Exception):
    """The API refused an object the operator creates (a 4xx other than a conflict or a
    throttle): retrying the same request as it is cannot help. ``status`` is the API's
    Status object (reason, message, details.causes), as far as it answered one."""

    def __init__(self, code: int, status: dict[str, Any]) -> None:
        super().__init__(f"{code} {status.get('reason', '')}: {status.get('message', '')}")
        self.code = code
        self.status = status


def _refusal(err: ApiException) -> Refused | None:
    """The refusal ``err`` is, or None for what a later try may get past (409, 429, 5xx)."""
    code = int(err.status or 0)
    if not 400 <= code < 500 or code in (409, 429):
        return None
    try:
        status = json.loads(err.body or "{}")
    except (TypeError, ValueError):
        status = {}
    if not isinstance(status, dict):
        status = {}
    status.setdefault("message", str(err.reason or ""))
    return Refused(code, status)


def load_config() -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def _json(response: Any) -> Any:
    return json.loads(response.data)


def _read(call: Callable[[], Any]) -> dict[str, Any] | None:
    """The object a read call returns; None when it does not exist (404)."""
    try:
        return dict(_json(call()))
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def _done(response: Any) -> None:
    """Read an answer not needed to its end: its connection then goes back to the pool (an
    unread one is dropped, and the next call opens another, a TLS handshake each time)."""
    response.drain_conn()
    response.release_conn()


class Kube:
    def __init__(self, api: client.ApiClient, namespaces: Sequence[str] = ()) -> None:
        self.namespaces = list(namespaces)  # watched; none: the whole cluster
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self._jobs = Fresh(self._list_jobs)  # passes that list at once share one list
        self._nodes = Fresh(self._list_nodes)  # GPU and deadline jobs list nodes every pass

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(
                _json(
                    self.custom.get_namespaced_custom_object(
                        GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
                    )
                )
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def list_jobs(self) -> list[dict[str, Any]]:
        """Every job in the namespaces this operator watches (all of them when none is set),
        as listed after this call began (``coalesce.Fresh``); shared: do not change it."""
        return self._jobs.get()

    def _list_jobs(self) -> list[dict[str, Any]]:
        args = (GROUP, VERSION)
        if not self.namespaces:
            data = self.custom.list_cluster_custom_object(*args, PLURAL, _preload_content=False)
            return list(_json(data)["items"])
        out: list[dict[str, Any]] = []
        for namespace in self.namespaces:
            data = self.custom.list_namespaced_custom_object(
                *args, namespace, PLURAL, _preload_content=False
            )
            out.extend(_json(data)["items"])
        return out

    def list_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        data = _json(
            self.core.list_namespaced_pod(
                namespace, label_selector=f"{LABEL_JOB}={job}", _preload_content=False
            )
        )
        return list(data["items"])

    def list_labelled_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        data = _json(
            self.core.list_namespaced_pod(
                namespace, label_selector=selector, _preload_content=False
            )
        )
        return list(data["items"])

    def delete_job(self, namespace: str, name: str, uid: str) -> None:
        """Delete the job (exactly this one: a UID precondition); its pods follow it."""
        body: Any = {"preconditions": {"uid": uid}, "propagationPolicy": "Background"}
        try:
            _done(
                self.custom.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, body=body, _preload_content=False
                )
            )
        except ApiException as err:
            if err.status == 409:
                raise Conflict(f"job {namespace}/{name} was replaced") from err
            if err.status != 404:
                raise

    def set_job_finalizer(
        self, body: dict[str, Any], finalizer: str, present: bool
    ) -> dict[str, Any] | None:
        """Add or remove one finalizer of the job as read in ``body`` (resourceVersion
        precondition); returns the job as patched, None when it is gone."""
        meta = body["metadata"]
        current = list(meta.get("finalizers") or [])
        wanted = [f for f in current if f != finalizer] + ([finalizer] if present else [])
        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
            {"op": "add", "path": "/metadata/finalizers", "value": wanted},
        ]
        try:
            return dict(
                _json(
                    self.custom.patch_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        meta["namespace"],
                        PLURAL,
                        meta["name"],
                        patch,
                        _content_type="application/json-patch+json",
                        _preload_content=False,
                    )
                )
            )
        except ApiException as err:
            if err.status in (409, 422):
                raise Conflict(f"job {meta['namespace']}/{meta['name']} changed") from err
            if err.status == 404:
                return None
            raise

    def get_node(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(_json(self.core.read_node(name, _preload_content=False)))
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def list_nodes(self) -> list[dict[str, Any]]:
        """Every node, as listed after this call began (``coalesce.Fresh``: passes asking
        at once share one list); shared: do not change it."""
        return self._nodes.get()

    def _list_nodes(self) -> list[dict[str, Any]]:
        return list(_json(self.core.list_node(_preload_content=False))["items"])

    def create_pod(self, namespace: str, body: dict[str, Any]) -> bool:
        """Create; False when a pod of that name exists already (a retried create); Refused
        when the API refuses the pod (invalid, forbidden by admission or quota)."""
        pod: Any = body
        return self._create(
            lambda: self.core.create_namespaced_pod(namespace, pod, _preload_content=False)
        )

    @staticmethod
    def _create(call: Callable[[], Any]) -> bool:
        """Run a create call: True, False on 409 (it exists), Refused on a refusal."""
        try:
            _done(call())
            return True
        except ApiException as err:
            if err.status == 409:
                return False
            if (refused := _refusal(err)) is not None:
                raise refused from None
            raise

    def create_service(self, namespace: str, body: dict[str, Any]) -> bool:
        """Create; False when a Service of that name exists already; Refused when the API
        refuses it (invalid, forbidden)."""
        service: Any = body
        return self._create(lambda: self.core.create_namespaced_service(
            namespace, service, _preload_content=False))

    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _read(lambda: self.core.read_namespaced_service(
            name, namespace, _preload_content=False))

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _read(lambda: self.core.read_namespaced_pod(
            name, namespace, _preload_content=False))

    def delete_pod(self, namespace: str, name: str) -> None:
        """Graceful delete: the pod's own terminationGracePeriodSeconds applies."""
        try:
            _done(self.core.delete_namespaced_pod(name, namespace, _preload_content=False))
        except ApiException as err:
            if err.status != 404:
                raise

    def release_pod(self, namespace: str, name: str) -> None:
        """Drop our finalizer (the attempt's end is recorded in the job's status)."""
        try:
            pod = _json(self.core.read_namespaced_pod(name, namespace, _preload_content=False))
        except ApiException as err:
            if err.status == 404:
                return
            raise
        finalizers = pod["metadata"].get("finalizers") or []
        if FINALIZER not in finalizers:
            return
        patch = [
            {
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": pod["metadata"]["resourceVersion"],
            },
            {
                "op": "replace",
                "path": "/metadata/finalizers",
                "value": [f for f in finalizers if f != FINALIZER],
            },
        ]
        try:
            _done(self.core.patch_namespaced_pod(name, namespace, patch, _preload_content=False))
        except ApiException as err:
            if err.status in (409, 422):
                raise Conflict(f"pod {namespace}/{name} changed") from err
            if err.status != 404:
                raise

    def patch_status(
        self, namespace: str, name: str, resource_version: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Replace status if the job is still at ``resource_version``; Conflict otherwise."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        try:
            return dict(
                _json(
                    self.custom.patch_namespaced_custom_object_status(
                        GROUP, VERSION, namespace, PLURAL, name, body, _preload_content=False
                    )
                )
            )
        except ApiException as err:
            if err.status == 409:
                raise Conflict(f"job {namespace}/{name} changed") from err
            raise

    def event(self, job: dict[str, Any], kind: str, reason: str, message: str) -> None:
        meta = job["metadata"]
        now = datetime.now(timezone.utc)
        body = {
            "metadata": {
                "name": f"{meta['name']}.{uuid.uuid4().hex[:12]}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": now.isoformat(),
            "lastTimestamp": now.isoformat(),
            "count": 1,
            "source": {"component": "spotrun-operator"},
            "reportingComponent": "spotrun.dev/operator",
            "reportingInstance": "spotrun-operator",
        }
        try:
            event: Any = body
            _done(
                self.core.create_namespaced_event(meta["namespace"], event, _preload_content=False)
            )
        except ApiException as err:  # an Event is best effort; never block a decision on it
            log.warning("cannot record event %s on %s: %s", reason, meta["name"], err.reason)


def watched_namespaces(env: Mapping[str, str]) -> list[str]:
    """The namespaces the operator watches (SPOTRUN_NAMESPACES, comma-separated; the entry
    point sets it from --namespace too); none: the whole cluster."""
    return [n for n in env.get("SPOTRUN_NAMESPACES", "").split(",") if n]
