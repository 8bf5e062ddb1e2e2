"""Push a local Docker image to the kind nodes' registry with its layers uncompressed.

    python3 hack/kind/ocipush.py IMAGE HOST:PORT/REPOSITORY:TAG [MORE_TAG...]

`docker push` gzips every layer on one core: the trainer's 6.3 GB took 10-15 min here, for a
registry that only the nodes on this machine read over Docker's bridge. This pushes what
`docker save` writes (the layers as plain tars, the image config) through the registry's HTTP
API (distribution's v2 protocol) and an OCI manifest whose layers are
`application/vnd.oci.image.layer.v1.tar`: the layer digests are the image's own diff IDs, so the
config is the image's byte for byte and its digest is the image ID. containerd pulls and unpacks
uncompressed layers like gzipped ones.

When the registry already holds the config and every layer (checked with HEAD, no export), only
the manifest is written (under TAG and every MORE_TAG); a blob another repository of the registry
holds is mounted, not sent (the trainer's base after the trainer). Otherwise the image is exported
once (Docker writes the whole export to a temporary folder first: +1 image size of disk for a
while) and every large member streamed to the registry while it is hashed (the registry checks
the digest it is told at the end): all layers, not only the missing ones, since an export of
Docker 20.10 names its layers by IDs that are not their digests. What the export holds is checked
against `docker image inspect` (an engine with the containerd image store, Docker 29's default,
exports differently and fails that check: use the overlay2 store). Standard
library only: hack/ runs it with the host's python3. Progress goes to stderr; nothing to stdout.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import posixpath
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from typing import IO
from urllib.parse import urlsplit

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
CHUNK = 1 << 20
SMALL = 1 << 20  # export members below this stay in memory until manifest.json names them
TIMEOUT = 600.0


class PushError(Exception):
    """A failure with its cause, printed as one line."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int


def say(message: str) -> None:
    print(f"[kind:registry] {message}", file=sys.stderr, flush=True)


def split_target(target: str) -> tuple[str, str, str]:
    """HOST:PORT/REPOSITORY:TAG -> (host:port, repository, tag)."""
    host, _, rest = target.partition("/")
    repository, _, tag = rest.rpartition(":")
    if not host or not repository or not tag or "/" in tag:
        raise PushError(f"target {target!r} is not HOST:PORT/REPOSITORY:TAG")
    return host, repository, tag


def inspect(image: str) -> tuple[str, list[str]]:
    """(image ID = the config's digest, the layers' diff IDs in order)."""
    done = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise PushError(f"docker image inspect {image}: {done.stderr.strip()}")
    (found,) = json.loads(done.stdout)
    return str(found["Id"]), [str(d) for d in found["RootFS"]["Layers"]]


class HashingReader:
    """A file's bytes as http.client reads them, hashed on the way."""

    def __init__(self, source: IO[bytes], size: int) -> None:
        self.source, self.left, self.sha = source, size, hashlib.sha256()

    def read(self, n: int = CHUNK) -> bytes:
        data = self.source.read(min(n, self.left)) if self.left else b""
        if self.left and not data:
            raise PushError("the export ended inside a layer")
        self.left -= len(data)
        self.sha.update(data)
        return data


class Registry:
    """One repository of a plain-HTTP registry (distribution's v2 API)."""

    def __init__(self, host: str, repository: str) -> None:
        self.host, self.repository = host, repository
        self.conn = http.client.HTTPConnection(host, timeout=TIMEOUT, blocksize=CHUNK)

    def call(
        self,
        method: str,
        path: str,
        body: bytes | HashingReader | None = None,
        headers: dict[str, str] | None = None,
        expect: tuple[int, ...] = (200,),
    ) -> Answer:
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            response = self.conn.getresponse()
            text = response.read()
        except (OSError, http.client.HTTPException) as e:
            self.conn.close()
            raise PushError(f"{method} http://{self.host}{path}: {e}") from e
        if response.status not in expect:
            raise PushError(
                f"{method} http://{self.host}{path}: HTTP {response.status} "
                f"{text[:300].decode(errors='replace')}"
            )
        return Answer(response.status, response.headers, text)

    def blob_size(self, digest: str) -> int | None:
        response = self.call("HEAD", f"/v2/{self.repository}/blobs/{digest}", expect=(200, 404))
        return int(response.headers["Content-Length"]) if response.status == 200 else None

    def repositories(self) -> list[str]:
        """The registry's repositories (its catalog's first page)."""
        answer = self.call("GET", "/v2/_catalog?n=1000", expect=(200,))
        found = json.loads(answer.body)
        return [str(r) for r in found.get("repositories") or []]

    def mount(self, digest: str, source: str) -> bool:
        """Link a blob SOURCE holds into this repository (no upload); False if SOURCE lacks it."""
        response = self.call(
            "POST",
            f"/v2/{self.repository}/blobs/uploads/?mount={digest}&from={source}",
            expect=(201, 202),
        )
        if response.status == 202:  # not mounted: an upload session opened instead; drop it
            self.call("DELETE", self._location(response), expect=(204, 404))
        return response.status == 201

    def _location(self, response: Answer) -> str:
        parts = urlsplit(response.headers["Location"])
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def _start(self) -> str:
        return self._location(
            self.call("POST", f"/v2/{self.repository}/blobs/uploads/", expect=(202,))
        )

    @staticmethod
    def _with_digest(location: str, digest: str) -> str:
        return f"{location}{'&' if '?' in location else '?'}digest={digest}"

    def put_blob(self, data: bytes) -> Blob:
        blob = Blob(f"sha256:{hashlib.sha256(data).hexdigest()}", len(data))
        if self.blob_size(blob.digest) is None:
            self.call(
                "PUT",
                self._with_digest(self._start(), blob.digest),
                body=data,
                headers={"Content-Type": "application/octet-stream"},
                expect=(201,),
            )
        return blob

    def stream_blob(self, source: IO[bytes], size: int) -> Blob:
        """Upload SIZE bytes of SOURCE (digest known only at the end: PATCH, then PUT)."""
        reader = HashingReader(source, size)
        patched = self.call(
            "PATCH",
            self._start(),
            body=reader,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            expect=(202,),
        )
        blob = Blob(f"sha256:{reader.sha.hexdigest()}", size)
        self.call("PUT", self._with_digest(self._location(patched), blob.digest), expect=(201,))
        return blob

    def put_manifest(self, tag: str, config: Blob, layers: list[Blob]) -> None:
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": config.digest, "size": config.size},
            "layers": [
                {"mediaType": LAYER_TYPE, "digest": b.digest, "size": b.size} for b in layers
            ],
        }
        self.call(
            "PUT",
            f"/v2/{self.repository}/manifests/{tag}",
            body=json.dumps(manifest).encode(),
            headers={"Content-Type": MANIFEST_TYPE},
            expect=(201,),
        )


def already_there(registry: Registry, config: str, diff_ids: list[str]) -> list[Blob] | None:
    """The config and layers as the registry holds them for this repository (a blob another
    repository of the registry holds is mounted: trainer's base `torch` costs no upload), or
    None if one is missing."""
    blobs = []
    others = [r for r in registry.repositories() if r != registry.repository]
    for digest in [config, *diff_ids]:
        size = registry.blob_size(digest)
        if size is None and any(registry.mount(digest, other) for other in others):
            size = registry.blob_size(digest)
        if size is None:
            return None
        blobs.append(Blob(digest, size))
    return blobs


def upload_export(registry: Registry, image: str) -> tuple[Blob, list[Blob]]:
    """docker save IMAGE, streamed through upload_stream."""
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    assert save.stdout is not None
    found = upload_stream(registry, save.stdout, f"docker save {image}")
    if save.wait() != 0:
        raise PushError(f"docker save {image} failed (exit {save.returncode})")
    return found


def upload_stream(registry: Registry, export: IO[bytes], what: str) -> tuple[Blob, list[Blob]]:
    """An export in `docker save`'s format, read once: every large member uploaded as it passes,
    the small ones kept until manifest.json says which are the config and the layers; the
    (config, layers) it names, as uploaded."""
    uploaded: dict[str, Blob] = {}
    small: dict[str, bytes] = {}
    aliases: dict[str, str] = {}  # Docker 20.10 links a repeated layer to its first copy
    with tarfile.open(fileobj=export, mode="r|") as members:
        for member in members:
            if member.issym():
                folder = posixpath.dirname(member.name)
                aliases[member.name] = posixpath.normpath(posixpath.join(folder, member.linkname))
                continue
            if member.islnk():
                aliases[member.name] = member.linkname
                continue
            if not member.isfile():
                continue
            source = members.extractfile(member)
            assert source is not None
            if member.size < SMALL:
                small[member.name] = source.read()
            else:
                start = time.monotonic()
                uploaded[member.name] = blob = registry.stream_blob(source, member.size)
                say(
                    f"  {member.name}: {blob.size / 1e6:.0f} MB in "
                    f"{time.monotonic() - start:.0f}s ({blob.digest[:19]})"
                )
    if "manifest.json" not in small:
        raise PushError(f"{what} wrote no manifest.json")
    (entry,) = json.loads(small["manifest.json"])

    def blob_of(name: str) -> Blob:
        for _ in range(8):  # links to links, at most a few
            name = aliases.get(name, name)
        if name in uploaded:
            return uploaded[name]
        if name not in small:
            raise PushError(f"{what}: manifest.json names {name}, not in the export")
        return registry.put_blob(small[name])

    return blob_of(entry["Config"]), [blob_of(name) for name in entry["Layers"]]


def push(image: str, target: str, *more_tags: str) -> None:
    host, repository, tag = split_target(target)
    config_digest, diff_ids = inspect(image)
    registry = Registry(host, repository)
    blobs = already_there(registry, config_digest, diff_ids)
    if blobs is not None:
        say(f"{target}: the config and all {len(diff_ids)} layers are there already")
        config, layers = blobs[0], blobs[1:]
    else:
        config, layers = upload_export(registry, image)
        got = [config.digest, *(b.digest for b in layers)]
        if got != [config_digest, *diff_ids]:
            raise PushError(
                f"docker save {image} holds {got}, docker image inspect says "
                f"{[config_digest, *diff_ids]}"
            )
    for name in (tag, *more_tags):
        registry.put_manifest(name, config, layers)
    say(
        f"{target}{''.join(f' +:{t}' for t in more_tags)}: manifest written "
        f"({len(layers)} uncompressed layers, "
        f"{sum(b.size for b in layers) / 1e9:.2f} GB)"
    )


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        push(*argv)
    except PushError as e:
        say(f"FAILED: {e}")
        return 1
    except (tarfile.TarError, KeyError, ValueError) as e:  # an export or answer not as expected
        say(f"FAILED: {argv[0]}: {type(e).__name__}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
