"""Find, verify and decode checkpoints from any store. Loading never runs pickled code.

A checkpoint is valid when its manifest parses, names exactly the format's files, and every
file has the listed size and CRC32C and decodes into a state restore can load (tensor header,
state.json, RNG state). ``load_verified`` runs all of these, so ``spotrun verify``/``ls``,
``pull``, direct mode's download and restore accept and refuse exactly the same checkpoints.
The sidecar, which never imports torch, checks the integrity part only (``integrity``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from . import codec, components, jsonsafe, layout, rng, tensorfile
from .integrity import CorruptCheckpointError as CorruptCheckpointError
from .integrity import Loaded as Loaded
from .integrity import load_checked
from .integrity import read_manifest as read_manifest
from .manifest import ManifestError, UnknownFormatError
from .store import Store

log = logging.getLogger("spotrun")


def load_verified(store: Store, name: str) -> Loaded:
    """Read every file the manifest lists, check its size and CRC32C (``integrity``), and that
    the payload decodes into a loadable state (on the CPU; nothing is loaded into a model)."""
    loaded = load_checked(store, name)
    decode_state(loaded, torch.device("cpu"))
    return loaded


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
    return decode_payload(loaded, "", components.check_state, device)


def decode_payload(
    loaded: Loaded,
    folder: str,
    check: Callable[[Any, int], dict[str, Any]],
    device: torch.device | None = None,
) -> dict[str, Any]:
    """The payload in ``folder`` ('' for the top level, ``rank-NNNNN`` for a gang rank's part)
    decoded and passed through ``check`` (with the step); CorruptCheckpointError otherwise."""
    prefix = f"{folder}/" if folder else ""
    try:
        tensors = tensorfile.load(loaded.files[prefix + layout.TENSORS])
        structure = jsonsafe.loads(loaded.files[prefix + layout.STRUCTURE])
        return check(codec.decode(structure, tensors, device), loaded.step)
    except (
        tensorfile.TensorFileError,
        jsonsafe.JsonError,
        codec.StateDecodeError,
        components.StateError,
        rng.RngStateError,
    ) as e:
        where = f"{loaded.name}/{folder}" if folder else loaded.name
        raise CorruptCheckpointError(f"{where}: payload cannot be decoded: {e}") from None


def tensors_of(loaded: Loaded) -> dict[str, torch.Tensor]:
    try:
        return tensorfile.load(loaded.files[layout.TENSORS])
    except tensorfile.TensorFileError as e:
        raise CorruptCheckpointError(f"{loaded.name}: {e}") from None
