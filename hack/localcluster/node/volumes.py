"""A pod's volumes as directories under the pod's dir, and each container's bind mounts.

emptyDir -> an empty directory; configMap / secret / downwardAPI / projected (incl. the
ServiceAccount token from the TokenRequest API and ``kube-root-ca.crt``) -> directories of
files; hostPath -> the host path itself; persistentVolumeClaim -> the directory of the
PersistentVolume bound to the claim (``hostPath`` or ``local.path``; a claim not bound yet
keeps the pod ContainerCreating, as a kubelet waiting to mount it). Other volume types fail
with a clear message.
"""

from __future__ import annotations

import base64
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .envvars import ConfigError, Fetch, field_value

Obj = dict[str, Any]


class TokenSource(Protocol):
    def __call__(
        self, namespace: str, service_account: str, audience: str | None, expiration: int,
        pod_name: str, pod_uid: str,
    ) -> str: ...


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool


def _mode(item_mode: int | None, default_mode: int | None) -> int:
    if item_mode is not None:
        return item_mode
    return default_mode if default_mode is not None else 0o644


def _write(directory: Path, rel: str, content: bytes, mode: int) -> None:
    path = directory / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.chmod(path, mode)


def _keyed(
    directory: Path, source: Obj, kind: str, namespace: str, fetch: Fetch, default_mode: int | None
) -> None:
    obj = fetch(kind, namespace, source["name"])
    if obj is None:
        if source.get("optional"):
            return
        raise ConfigError(f'{kind[:-1]} "{source["name"]}" not found')
    data: dict[str, bytes] = {}
    for k, v in (obj.get("data") or {}).items():
        data[k] = base64.b64decode(v) if kind == "secrets" else str(v).encode()
    for k, v in (obj.get("binaryData") or {}).items():
        data[k] = base64.b64decode(v)
    items = source.get("items")
    if items:
        for item in items:
            if item["key"] not in data:
                if source.get("optional"):
                    continue
                raise ConfigError(f'key {item["key"]} not found in {kind[:-1]} {source["name"]}')
            mode = _mode(item.get("mode"), default_mode)
            _write(directory, item["path"], data[item["key"]], mode)
    else:
        for k, v in data.items():
            _write(directory, k, v, _mode(None, default_mode))


def _downward(directory: Path, pod: Obj, items: list[Obj], default_mode: int | None) -> None:
    for item in items:
        if "fieldRef" not in item:
            raise ConfigError("downwardAPI volume: only fieldRef items are supported")
        value = field_value(pod, item["fieldRef"]["fieldPath"])
        _write(directory, item["path"], value.encode(), _mode(item.get("mode"), default_mode))


# PersistentVolumeSpec fields that are not a volume source.
_PV_FIELDS = frozenset({
    "accessModes", "capacity", "claimRef", "mountOptions", "nodeAffinity",
    "persistentVolumeReclaimPolicy", "storageClassName", "volumeMode",
    "volumeAttributesClassName",
})


def claimed_path(claim: Obj, namespace: str, fetch: Fetch) -> Path:
    """The host directory of the PersistentVolume bound to ``claim`` (a pod volume's
    ``persistentVolumeClaim``); ConfigError while the claim is missing or unbound."""
    name = claim["claimName"]
    pvc = fetch("persistentvolumeclaims", namespace, name)
    if pvc is None:
        raise ConfigError(f'persistentvolumeclaim "{name}" not found')
    phase = (pvc.get("status") or {}).get("phase", "Pending")
    volume_name = (pvc.get("spec") or {}).get("volumeName")
    if phase != "Bound" or not volume_name:
        raise ConfigError(f'persistentvolumeclaim "{name}" is not bound (phase {phase})')
    pv = fetch("persistentvolumes", "", volume_name)
    if pv is None:
        raise ConfigError(f'persistentvolume "{volume_name}" of claim "{name}" not found')
    bound_to = (pv["spec"].get("claimRef") or {}).get("uid")
    if bound_to != pvc["metadata"]["uid"]:
        raise ConfigError(f'persistentvolume "{volume_name}" is not bound to claim "{name}"')
    if "hostPath" in pv["spec"]:
        source = pv["spec"]["hostPath"]
        path = Path(source["path"])
        if source.get("type") == "DirectoryOrCreate":
            path.mkdir(parents=True, exist_ok=True)
    elif "local" in pv["spec"]:
        path = Path(pv["spec"]["local"]["path"])
    else:
        kinds = sorted(k for k in pv["spec"] if k not in _PV_FIELDS)
        raise ConfigError(
            f'persistentvolume "{volume_name}": type {kinds} is not supported by the process '
            "node (supported: hostPath, local)"
        )
    if not path.is_dir():
        raise ConfigError(f'persistentvolume "{volume_name}": path {path} does not exist')
    return path


def prepare(pod: Obj, pod_dir: Path, fetch: Fetch, token: TokenSource) -> dict[str, Path]:
    """Materialise every volume of ``pod``; return volume name -> host path."""
    meta, spec = pod["metadata"], pod["spec"]
    namespace = meta["namespace"]
    out: dict[str, Path] = {}
    for volume in spec.get("volumes") or []:
        name = volume["name"]
        directory = pod_dir / "volumes" / name
        if "hostPath" in volume:
            out[name] = Path(volume["hostPath"]["path"])
            continue
        if "persistentVolumeClaim" in volume:
            out[name] = claimed_path(volume["persistentVolumeClaim"], namespace, fetch)
            continue
        if directory.exists() and "emptyDir" not in volume:
            shutil.rmtree(directory)
        directory.mkdir(parents=True, exist_ok=True)
        out[name] = directory
        if "emptyDir" in volume:
            continue
        if "configMap" in volume or "secret" in volume:
            kind = "configmaps" if "configMap" in volume else "secrets"
            source = dict(volume.get("configMap") or volume.get("secret") or {})
            source.setdefault("name", source.get("secretName", ""))
            _keyed(directory, source, kind, namespace, fetch, source.get("defaultMode"))
        elif "downwardAPI" in volume:
            dapi = volume["downwardAPI"]
            _downward(directory, pod, dapi.get("items") or [], dapi.get("defaultMode"))
        elif "projected" in volume:
            projected = volume["projected"]
            default_mode = projected.get("defaultMode")
            for source in projected.get("sources") or []:
                if "serviceAccountToken" in source:
                    sat = source["serviceAccountToken"]
                    value = token(
                        namespace, spec.get("serviceAccountName") or "default",
                        sat.get("audience"), int(sat.get("expirationSeconds", 3607)),
                        meta["name"], meta["uid"],
                    )
                    _write(directory, sat["path"], value.encode(), _mode(None, default_mode))
                elif "configMap" in source:
                    _keyed(directory, source["configMap"], "configmaps", namespace, fetch,
                           default_mode)
                elif "secret" in source:
                    _keyed(directory, source["secret"], "secrets", namespace, fetch, default_mode)
                elif "downwardAPI" in source:
                    _downward(directory, pod, source["downwardAPI"].get("items") or [],
                              default_mode)
                else:
                    raise ConfigError(
                        f"projected volume {name}: unsupported source {sorted(source)}"
                    )
        else:
            kinds = sorted(k for k in volume if k != "name")
            raise ConfigError(
                f"volume {name}: type {kinds} is not supported by the process node "
                "(supported: emptyDir, configMap, secret, downwardAPI, projected, hostPath, "
                "persistentVolumeClaim)"
            )
    return out


def read_only_volumes(pod: Obj) -> frozenset[str]:
    """Volumes every mount of which is read-only: claims with ``readOnly: true``."""
    return frozenset(
        v["name"] for v in pod["spec"].get("volumes") or []
        if (v.get("persistentVolumeClaim") or {}).get("readOnly")
    )


def mounts(
    container: Obj, volume_paths: dict[str, Path], read_only: frozenset[str] = frozenset()
) -> list[Mount]:
    out = []
    for vm in container.get("volumeMounts") or []:
        if vm["name"] not in volume_paths:
            raise ConfigError(f'volumeMount {vm["mountPath"]}: no volume named {vm["name"]}')
        source = volume_paths[vm["name"]]
        if vm.get("subPath"):
            source = source / vm["subPath"]
            if not source.exists():
                source.mkdir(parents=True)
        out.append(Mount(source, vm["mountPath"],
                         bool(vm.get("readOnly")) or vm["name"] in read_only))
    return out
