"""hack/kind/ocipush.py reads an export the way `docker save` writes it (Docker 20.10's layer
folders, with a repeated layer as a link to its first copy; Docker 25's OCI blobs) and pushes the
config and layers that manifest.json names, in order, each once."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import sys
import tarfile
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import pytest

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[2] / "hack" / "kind" / "ocipush.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ocipush", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ocipush"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


ocipush = load()


def digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class Registry:
    """What upload_stream asks of the registry, recorded."""

    def __init__(self) -> None:
        self.streamed: list[str] = []
        self.put: list[str] = []

    def stream_blob(self, source: IO[bytes], size: int) -> Any:
        data = source.read(size)
        self.streamed.append(digest(data))
        return ocipush.Blob(digest(data), len(data))

    def put_blob(self, data: bytes) -> Any:
        self.put.append(digest(data))
        return ocipush.Blob(digest(data), len(data))


def export(files: dict[str, bytes], links: dict[str, str] | None = None) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    out.seek(0)
    return out


BIG, OTHER, CONFIG = b"L" * 4096, b"small layer", b'{"rootfs": {}}'


def test_a_repeated_layer_linked_by_docker_20_is_named_twice_and_sent_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ocipush, "SMALL", 1024)  # BIG streams, the rest stays in memory
    manifest = [{"Config": "c0ffee.json", "Layers": ["a/layer.tar", "b/layer.tar", "c/layer.tar"]}]
    stream = export(
        {
            "a/layer.tar": BIG,
            "c/layer.tar": OTHER,
            "c0ffee.json": CONFIG,
            "manifest.json": json.dumps(manifest).encode(),
        },
        links={"b/layer.tar": "../a/layer.tar"},
    )
    registry = Registry()
    config, layers = ocipush.upload_stream(registry, stream, "docker save x")
    assert config.digest == digest(CONFIG)
    assert [b.digest for b in layers] == [digest(BIG), digest(BIG), digest(OTHER)]
    assert registry.streamed == [digest(BIG)]  # once, though named twice
    assert sorted(registry.put) == sorted([digest(OTHER), digest(CONFIG)])


def test_docker_25s_oci_export_is_read_by_its_manifest_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ocipush, "SMALL", 1024)
    blob = {data: f"blobs/sha256/{digest(data).split(':')[1]}" for data in (BIG, OTHER, CONFIG)}
    manifest = [{"Config": blob[CONFIG], "Layers": [blob[BIG], blob[OTHER]]}]
    files = {name: data for data, name in blob.items()}
    files |= {
        "oci-layout": b"{}",
        "index.json": b"{}",
        "manifest.json": json.dumps(manifest).encode(),
    }
    config, layers = ocipush.upload_stream(Registry(), export(files), "docker save x")
    assert (config.digest, [b.digest for b in layers]) == (
        digest(CONFIG),
        [digest(BIG), digest(OTHER)],
    )


def test_an_export_naming_a_layer_it_lacks_fails_with_one_line() -> None:
    manifest = [{"Config": "c.json", "Layers": ["gone/layer.tar"]}]
    stream = export({"c.json": CONFIG, "manifest.json": json.dumps(manifest).encode()})
    with pytest.raises(ocipush.PushError, match="manifest.json names gone/layer.tar, not in"):
        ocipush.upload_stream(Registry(), stream, "docker save x")


def test_targets_are_host_repository_and_tag() -> None:
    assert ocipush.split_target("localhost:5001/spotrun/trainer:0.1.0-abc") == (
        "localhost:5001",
        "spotrun/trainer",
        "0.1.0-abc",
    )
    with pytest.raises(ocipush.PushError, match="is not HOST:PORT/REPOSITORY:TAG"):
        ocipush.split_target("trainer")
