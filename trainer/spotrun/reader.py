"""Find, verify and decode checkpoints from any store. Loading never runs pickled code.

A checkpoint is valid when its manifest parses, names exactly the format's files, and every
file has the listed size and CRC32C and decodes into a state restore can load (tensor header,
state.json, RNG state). ``load_verified`` runs all of these, so ``spotrun verify``/``ls``, the
sidecar's download, ``pull`` and restore accept and refuse exactly the same checkpoints.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from . import checksum, codec, components, jsonsafe, layout, rng, tensorfile
from .manifest import FileEntry, Manifest, ManifestError, UnknownFormatError, parse
from .store import OversizeError, Store, UnsafeFileError
from .transferlog import TransferLog

log = logging.getLogger("spotrun")


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


def load_verified(store: Store, name: str) -> Loaded:
    """Read every file the manifest lists, check its size and CRC32C, and that the payload
    decodes into a loadable state (on the CPU; nothing is loaded into a model)."""
    manifest = read_manifest(store, name)
    progress = TransferLog(f"reading {store.file_uri(name)}", manifest.total_size)
    files = {entry.path: _read_checked(store, name, entry, progress) for entry in manifest.files}
    loaded = Loaded(name, manifest, files)
    decode_state(loaded, torch.device("cpu"))
    return loaded


def _read_checked(store: Store, name: str, entry: FileEntry, progress: TransferLog) -> bytearray:
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


def newest_valid(store: Store) -> Loaded | None:
    """The newest checkpoint that verifies; older ones are tried in turn, each skip logged.

    An unknown format version is not skipped: it raises, because falling back past a newer
    checkpoint would silently lose progress.
    """
    for _, name in layout.newest_first(store.names()):
        try:
            return load_verified(store, name)
        except UnknownFormatError:
            raise
        except (ManifestError, CorruptCheckpointError) as e:
            log.warning("spotrun: skipping checkpoint %s: %s; trying an older one", name, e)
    return None


def decode_state(loaded: Loaded, device: torch.device | None = None) -> dict[str, Any]:
    """The nested state saved in a checkpoint, checked for what restore needs; tensors are
    views of the read bytes, those saved on an accelerator moved to ``device`` (default: CUDA
    when present)."""
    try:
        tensors = tensorfile.load(loaded.files[layout.TENSORS])
        structure = jsonsafe.loads(loaded.files[layout.STRUCTURE])
        state = components.check_state(codec.decode(structure, tensors, device), loaded.step)
    except (
        tensorfile.TensorFileError,
        jsonsafe.JsonError,
        codec.StateDecodeError,
        components.StateError,
        rng.RngStateError,
    ) as e:
        raise CorruptCheckpointError(f"{loaded.name}: payload cannot be decoded: {e}") from None
    return state


def tensors_of(loaded: Loaded) -> dict[str, torch.Tensor]:
    try:
        return tensorfile.load(loaded.files[layout.TENSORS])
    except tensorfile.TensorFileError as e:
        raise CorruptCheckpointError(f"{loaded.name}: {e}") from None
