"""The header of a tensor file (safetensors format), parsed and checked without torch.

The sidecar restores with this (it never imports torch): a checkpoint whose bytes match its
manifest but whose tensor file is not a well-formed one is skipped there, so an older valid
checkpoint is restored instead. ``tensorfile`` builds its torch views on top of it.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any, TypeGuard

from . import jsonsafe

# the dtypes a checkpoint may hold, by their safetensors names, and their sizes in bytes
ITEMSIZE: dict[str, int] = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
MAX_HEADER = 100 * 1024 * 1024
MAX_DIMS = 32


class TensorFileError(ValueError):
    """The bytes are not a tensor file this reader accepts."""


@dataclass(frozen=True)
class Entry:
    key: str
    dtype: str  # a key of ITEMSIZE
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class Header:
    entries: tuple[Entry, ...]  # by offset
    length: int  # bytes of the header: 8-byte length + JSON; the data section starts here
    data_size: int


def parse(blob: bytes | bytearray | memoryview) -> Header:
    """Every entry is checked: a known dtype, non-negative integer dimensions, offsets that
    match the shape and are aligned for the dtype, and tensors that tile the data section
    exactly (no overlap, no gap, nothing out of range)."""
    if len(blob) < 8:
        raise TensorFileError("shorter than a tensor file header")
    (length,) = struct.unpack("<Q", bytes(blob[:8]))
    if length > MAX_HEADER or 8 + length > len(blob):
        raise TensorFileError(f"header length {length} does not fit the file")
    try:
        fields = jsonsafe.loads(blob[8 : 8 + length])
    except jsonsafe.JsonError as err:
        raise TensorFileError(f"header is {err}") from None
    if not isinstance(fields, dict):
        raise TensorFileError("header is not a JSON object")
    metadata = fields.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise TensorFileError("header __metadata__ is not a mapping of strings")
    entries = sorted((_entry(k, v) for k, v in fields.items()), key=lambda e: (e.start, e.end))
    data_size = 0
    for e in entries:
        if e.start != data_size:
            raise TensorFileError(
                f"tensor {e.key!r} starts at byte {e.start} of the data section, not at "
                f"{data_size}: overlapping or out-of-range offsets, or a gap"
            )
        if e.start % ITEMSIZE[e.dtype]:
            raise TensorFileError(f"tensor {e.key!r} is not aligned for {e.dtype}")
        data_size = e.end
    if 8 + length + data_size != len(blob):
        raise TensorFileError(
            f"data section is {len(blob) - 8 - length} bytes, header describes {data_size}"
        )
    return Header(tuple(entries), 8 + length, data_size)


def _entry(key: str, value: Any) -> Entry:
    if not isinstance(value, dict):
        raise TensorFileError(f"bad header entry for {key!r}: {value!r:.80}")
    name: Any = value.get("dtype")
    shape: Any = value.get("shape")
    offsets: Any = value.get("data_offsets")
    if not (isinstance(name, str) and name in ITEMSIZE):
        raise TensorFileError(f"tensor {key!r}: unknown dtype {name!r:.40}")
    if not (_naturals(shape) and len(shape) <= MAX_DIMS):
        raise TensorFileError(
            f"tensor {key!r}: shape {shape!r:.80} is not a list of at most {MAX_DIMS} "
            "non-negative integers"
        )
    if not (_naturals(offsets) and len(offsets) == 2):
        raise TensorFileError(f"tensor {key!r}: data_offsets {offsets!r:.80} are not [start, end]")
    start, end = offsets
    if end - start != math.prod(shape) * ITEMSIZE[name]:
        raise TensorFileError(f"tensor {key!r}: offsets {start}..{end} do not match its shape")
    return Entry(key, name, tuple(shape), start, end)


def _naturals(value: Any) -> TypeGuard[list[int]]:
    """A list of non-negative ints below 2**63 (no bools, floats or strings)."""
    return isinstance(value, list) and all(type(v) is int and 0 <= v < 2**63 for v in value)
