"""Find, verify and decode checkpoints from any store. Loading never runs pickled code."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import torch

from . import checksum, codec, layout, tensorfile
from .manifest import Manifest, ManifestError, UnknownFormatError, parse
from .store import Store
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
        blob = store.read(name, layout.MANIFEST)
    except FileNotFoundError:
        raise ManifestError(f"{where}: no MANIFEST.json (never committed)") from None
    manifest = parse(bytes(blob), where)
    if layout.parse_step_dirname(name) != manifest.step:
        raise ManifestError(f"{where}: manifest says step {manifest.step}, folder disagrees")
    return manifest


def load_verified(store: Store, name: str) -> Loaded:
    """Read every file the manifest lists and check its size and CRC32C."""
    manifest = read_manifest(store, name)
    progress = TransferLog(f"reading {store.file_uri(name)}", manifest.total_size)
    files = {}
    for entry in manifest.files:
        where = store.file_uri(name, entry.path)
        try:
            blob = store.read(name, entry.path, progress)
        except FileNotFoundError:
            raise CorruptCheckpointError(f"{where}: missing (the manifest lists it)") from None
        if len(blob) != entry.size:
            raise CorruptCheckpointError(
                f"{where}: {len(blob)} bytes, the manifest says {entry.size} (truncated?)"
            )
        actual = checksum.to_hex(checksum.of_bytes(blob))
        if actual != entry.crc32c:
            raise CorruptCheckpointError(
                f"{where}: CRC32C {actual}, the manifest says {entry.crc32c} (corrupted bytes)"
            )
        files[entry.path] = blob
    return Loaded(name, manifest, files)


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


def decode_state(loaded: Loaded) -> dict[str, Any]:
    """The nested state saved in a checkpoint, tensors as CPU views of the read bytes."""
    where = loaded.name
    try:
        tensors = tensorfile.load(loaded.files[layout.TENSORS])
        structure = json.loads(loaded.files[layout.STRUCTURE])
        state = codec.decode(structure, tensors)
    except KeyError as e:
        raise CorruptCheckpointError(f"{where}: missing entry {e} in its payload") from None
    except (tensorfile.TensorFileError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptCheckpointError(f"{where}: payload cannot be decoded: {e}") from None
    if not isinstance(state, dict):
        raise CorruptCheckpointError(f"{where}: state.json does not hold a mapping")
    return state


def tensors_of(loaded: Loaded) -> dict[str, torch.Tensor]:
    try:
        return tensorfile.load(loaded.files[layout.TENSORS])
    except tensorfile.TensorFileError as e:
        raise CorruptCheckpointError(f"{loaded.name}: {e}") from None
