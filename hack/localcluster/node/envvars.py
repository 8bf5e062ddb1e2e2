"""A container's environment as a kubelet builds it: env, envFrom, refs, $(VAR) expansion."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from typing import Any

Obj = dict[str, Any]
# Fetch an object by (kind, namespace, name), e.g. ("secrets", "ns", "creds"); namespace ""
# for a cluster-scoped kind ("persistentvolumes"); None when it does not exist.
Fetch = Callable[[str, str, str], Obj | None]

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(RuntimeError):
    """The pod references something that is missing (kubelet: CreateContainerConfigError)."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes $(VAR) expansion: known names are replaced, $$ escapes, others stay."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _REF.sub(sub, text)


def _data(obj: Obj, kind: str) -> dict[str, str]:
    if kind == "secrets":
        raw = obj.get("data") or {}
        return {k: base64.b64decode(v).decode() for k, v in raw.items()}
    out = dict(obj.get("data") or {})
    for k, v in (obj.get("binaryData") or {}).items():
        out[k] = base64.b64decode(v).decode(errors="replace")
    return out


def _key_ref(ref: Obj, kind: str, namespace: str, fetch: Fetch) -> str | None:
    obj = fetch(kind, namespace, ref["name"])
    label = "secret" if kind == "secrets" else "configmap"
    if obj is None:
        if ref.get("optional"):
            return None
        raise ConfigError(f'{label} "{ref["name"]}" not found')
    data = _data(obj, kind)
    if ref["key"] not in data:
        if ref.get("optional"):
            return None
        raise ConfigError(f'couldn\'t find key {ref["key"]} in {label.capitalize()} '
                          f'{namespace}/{ref["name"]}')
    return data[ref["key"]]


def field_value(pod: Obj, path: str) -> str:
    """The downward API value of ``path`` (fieldRef.fieldPath) for ``pod``."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
        "status.podIP": "127.0.0.1",
        "status.podIPs": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path])
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted((meta.get(path.split(".")[1]) or {}).items())
        return "\n".join(f'{k}="{v}"' for k, v in items)
    del status
    raise ConfigError(f"unsupported fieldRef.fieldPath {path!r}")


def resource_value(container: Obj, ref: Obj) -> str:
    """resourceFieldRef: the container's limit/request (divisor ignored)."""
    kind, _, resource = ref["resource"].partition(".")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(resource)
    if value is None and kind == "requests":
        value = (resources.get("limits") or {}).get(resource)
    if value is None:
        value = {"cpu": "8", "memory": "34359738368"}.get(resource, "0")
    return str(value)


def container_env(
    pod: Obj, container: Obj, fetch: Fetch, base: Mapping[str, str]
) -> dict[str, str]:
    """The full environment of ``container``: ``base`` then envFrom then env (in order)."""
    namespace = pod["metadata"]["namespace"]
    env = dict(base)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
            ref = source.get(key)
            if ref is None:
                continue
            obj = fetch(kind, namespace, ref["name"])
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind[:-1]} "{ref["name"]}" not found')
            for k, v in _data(obj, kind).items():
                env[prefix + k] = v
    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" not in item:
            env[name] = expand(item.get("value", ""), env)
            continue
        source = item["valueFrom"]
        value: str | None
        if "secretKeyRef" in source:
            value = _key_ref(source["secretKeyRef"], "secrets", namespace, fetch)
        elif "configMapKeyRef" in source:
            value = _key_ref(source["configMapKeyRef"], "configmaps", namespace, fetch)
        elif "fieldRef" in source:
            value = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            value = resource_value(container, source["resourceFieldRef"])
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            env[name] = value
    return env
