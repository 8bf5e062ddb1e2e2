"""A small JSON client for the local API server (client-cert auth), used by the process node.

Objects are plain dicts exactly as the API returns them; that keeps status building pure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

import urllib3

from .pki import Pki

Obj = dict[str, Any]

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}


class KubeError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        try:
            detail = json.loads(body)
            self.reason: str = detail.get("reason", "")
            message = detail.get("message", body)
        except ValueError:
            self.reason, message = "", body
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.status = status


class Kube:
    def __init__(self, server: str, pki: Pki, user: str = "admin") -> None:
        self.server = server.rstrip("/")
        self._http = urllib3.PoolManager(
            num_pools=4,
            maxsize=16,
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(pki.ca_crt),
            cert_file=str(pki.crt(user)),
            key_file=str(pki.key(user)),
            retries=False,
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Any:
        url = self.server + path + (f"?{urlencode(params)}" if params else "")
        data = None if body is None else json.dumps(body).encode()
        try:
            resp = self._http.request(
                method,
                url,
                body=data,
                headers={"Content-Type": content_type, "Accept": "application/json"},
                timeout=urllib3.Timeout(connect=5.0, read=timeout),
            )
        except urllib3.exceptions.HTTPError as err:
            raise KubeError(method, path, 0, f"connection failed: {err}") from err
        text = resp.data.decode()
        if resp.status >= 400:
            raise KubeError(method, path, resp.status, text)
        return json.loads(text) if text else None

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body)

    def patch(self, path: str, body: Any, kind: str = "merge") -> Any:
        return self.request("PATCH", path, body, content_type=PATCH_TYPES[kind])

    def delete(self, path: str, body: Any = None) -> Any:
        return self.request("DELETE", path, body)

    def watch(self, path: str, params: Mapping[str, str], timeout_seconds: int) -> Iterator[Obj]:
        """Yield watch events ({type, object}) until the server ends the watch."""
        query = dict(params, watch="true", timeoutSeconds=str(timeout_seconds))
        url = f"{self.server}{path}?{urlencode(query)}"
        try:
            resp = self._http.request(
                "GET",
                url,
                preload_content=False,
                timeout=urllib3.Timeout(connect=5.0, read=timeout_seconds + 10),
            )
        except urllib3.exceptions.HTTPError as err:
            raise KubeError("WATCH", path, 0, f"connection failed: {err}") from err
        try:
            if resp.status >= 400:
                raise KubeError("WATCH", path, resp.status, resp.read().decode())
            buffer = b""
            try:
                for chunk in resp.stream(64 * 1024):
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if line.strip():
                            yield json.loads(line)
            except urllib3.exceptions.HTTPError as err:
                raise KubeError("WATCH", path, 0, f"connection lost: {err}") from err
        finally:
            resp.release_conn()
