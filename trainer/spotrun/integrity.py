"""A checkpoint's integrity, torch-free: its manifest parses and names only the format's files,
and every file has the listed size and CRC32C; ``load_framed`` also checks that the payload is
well formed (a tensor file whose header tiles its data section, a state that is a JSON object).

The sidecar restores with ``load_framed`` (it never imports torch, so a resume does not wait
for it): a newest checkpoint whose bytes match its manifest but whose payload is malformed is
skipped there like a corrupt one, and an older valid one is restored. ``reader.load_verified``
adds the full decode on top, where torch is at hand (restore, ``pull``, ``verify``, direct
mode); a payload well formed but not decodable into a state is refused by the trainer's
restore, which says so. No code runs either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import checksum, jsonsafe, layout, tensorheader
from .manifest import FileEntry, Manifest, ManifestError, parse
from .store import OversizeError, Store, UnsafeFileError
from .transferlog import TransferLog


class CorruptCheckpointError(ValueError):
    """A checkpoint whose files do not match its manifest (or cannot be decoded)."""


@dataclass
class Loaded:
    name: str
    manifest: Manifest
    files: dict[str, bytearray]

    @property
    def step(self) -> int:
        return self.manifest.step


def read_manifest(store: Store, name: str) -> Manifest:
    where = store.file_uri(name)
    try:
        blob = store.read(name, layout.MANIFEST, limit=layout.MANIFEST_LIMIT)
    except FileNotFoundError:
        raise ManifestError(f"{where}: no MANIFEST.json (never committed)") from None
    except (OversizeError, UnsafeFileError, PermissionError) as e:
        raise ManifestError(str(e)) from None  # the message names the file
    manifest = parse(bytes(blob), where)
    if layout.parse_step_dirname(name) != manifest.step:
        raise ManifestError(f"{where}: manifest says step {manifest.step}, folder disagrees")
    return manifest


def load_checked(store: Store, name: str) -> Loaded:
    """Read every file the manifest lists and check its size and CRC32C (nothing decoded)."""
    manifest = read_manifest(store, name)
    progress = TransferLog(f"reading {store.file_uri(name)}", manifest.total_size)
    files = {entry.path: read_checked(store, name, entry, progress) for entry in manifest.files}
    return Loaded(name, manifest, files)


def load_framed(store: Store, name: str) -> Loaded:
    """``load_checked``, and the payload is well formed (what can be told without torch)."""
    loaded = load_checked(store, name)
    for path, blob in loaded.files.items():  # a gang's rank-NNNNN/ files too
        leaf = path.rpartition("/")[2]
        try:
            if leaf == layout.TENSORS:
                tensorheader.parse(blob)
                continue
            structure = jsonsafe.loads(blob)
        except (tensorheader.TensorFileError, jsonsafe.JsonError) as e:
            raise CorruptCheckpointError(
                f"{store.file_uri(name, path)}: malformed payload: {e}"
            ) from None
        if not isinstance(structure, dict):
            raise CorruptCheckpointError(
                f"{store.file_uri(name, path)}: malformed payload: not a JSON object"
            )
    return loaded


def read_checked(store: Store, name: str, entry: FileEntry, progress: TransferLog) -> bytearray:
    where = store.file_uri(name, entry.path)
    try:
        blob = store.read(name, entry.path, progress, limit=entry.size)
    except FileNotFoundError:
        raise CorruptCheckpointError(f"{where}: missing (the manifest lists it)") from None
    except (OversizeError, UnsafeFileError, PermissionError) as e:
        raise CorruptCheckpointError(str(e)) from None  # the message names the file
    if len(blob) != entry.size:
        raise CorruptCheckpointError(
            f"{where}: {len(blob)} bytes, the manifest says {entry.size} (truncated?)"
        )
    actual = checksum.to_hex(checksum.of_bytes(blob))
    if actual != entry.crc32c:
        raise CorruptCheckpointError(
            f"{where}: CRC32C {actual}, the manifest says {entry.crc32c} (corrupted bytes)"
        )
    return blob
