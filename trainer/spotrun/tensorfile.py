"""A safetensors-format file written straight from one preallocated host buffer.

The snapshot copies every tensor into one contiguous buffer laid out exactly like the data
section of a safetensors file, so writing the checkpoint is one sequential write of a
header plus that buffer (as fast as a raw copy of the bytes), and the result opens with
``safetensors.torch.load_file`` too. Tensors are placed largest element size first, so every
tensor starts aligned for its dtype and can be read back as a zero-copy view.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any, TypeGuard

import torch

from . import jsonsafe

DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
}
BY_NAME = {name: dtype for dtype, name in DTYPES.items()}
ALIGN = 4096  # the header is padded to a page so the data section can be written with O_DIRECT
MAX_HEADER = 100 * 1024 * 1024
MAX_DIMS = 32


class TensorFileError(ValueError):
    """The bytes are not a tensor file this reader accepts."""


@dataclass(frozen=True)
class Slot:
    key: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class Layout:
    """Where each tensor lives in the data section, and the header that describes it."""

    slots: tuple[Slot, ...]
    header: bytes  # 8-byte length + JSON, padded with spaces so the data starts page-aligned
    data_size: int

    @property
    def file_size(self) -> int:
        return len(self.header) + self.data_size

    def signature(self) -> tuple[tuple[str, torch.dtype, tuple[int, ...]], ...]:
        return tuple((s.key, s.dtype, s.shape) for s in self.slots)


def plan(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Layout:
    """Lay tensors out by descending element size so each one is aligned for its dtype."""
    for key, t in tensors.items():
        if t.dtype not in DTYPES:
            raise TensorFileError(f"tensor {key!r} has dtype {t.dtype}, which cannot be saved")
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    slots = []
    offset = 0
    for key in order:
        t = tensors[key]
        nbytes = t.numel() * t.element_size()
        slots.append(Slot(key, t.dtype, tuple(t.shape), offset, offset + nbytes))
        offset += nbytes
    return Layout(tuple(slots), _header(slots, metadata or {}), offset)


def _header(slots: list[Slot], metadata: dict[str, str]) -> bytes:
    entries: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    for s in slots:
        entries[s.key] = {
            "dtype": DTYPES[s.dtype],
            "shape": list(s.shape),
            "data_offsets": [s.start, s.end],
        }
    body = json.dumps(entries, separators=(",", ":")).encode()
    body += b" " * (-(8 + len(body)) % ALIGN)
    return struct.pack("<Q", len(body)) + body


def views(layout: Layout, data: torch.Tensor) -> dict[str, torch.Tensor]:
    """Tensors viewing ``data`` (uint8, the data section) at their slots; no copy."""
    out = {}
    for s in layout.slots:
        chunk = data[s.start : s.end]
        out[s.key] = (
            chunk.view(s.dtype).view(s.shape)
            if s.end > s.start
            else torch.empty(s.shape, dtype=s.dtype)
        )
    return out


def parse_header(blob: bytes | bytearray | memoryview) -> tuple[Layout, int]:
    """(layout, data start) from the beginning of a file. Every entry is checked: a known
    dtype, non-negative integer dimensions, offsets that match the shape, and tensors that
    tile the data section exactly (no overlap, no gap, nothing out of range)."""
    if len(blob) < 8:
        raise TensorFileError("shorter than a tensor file header")
    (length,) = struct.unpack("<Q", bytes(blob[:8]))
    if length > MAX_HEADER or 8 + length > len(blob):
        raise TensorFileError(f"header length {length} does not fit the file")
    try:
        entries = jsonsafe.loads(blob[8 : 8 + length])
    except jsonsafe.JsonError as e:
        raise TensorFileError(f"header is {e}") from None
    if not isinstance(entries, dict):
        raise TensorFileError("header is not a JSON object")
    metadata = entries.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise TensorFileError("header __metadata__ is not a mapping of strings")
    slots = sorted((_slot(k, v) for k, v in entries.items()), key=lambda s: (s.start, s.end))
    data_size = 0
    for s in slots:
        if s.start != data_size:
            raise TensorFileError(
                f"tensor {s.key!r} starts at byte {s.start} of the data section, not at "
                f"{data_size}: overlapping or out-of-range offsets, or a gap"
            )
        data_size = s.end
    if 8 + length + data_size != len(blob):
        raise TensorFileError(
            f"data section is {len(blob) - 8 - length} bytes, header describes {data_size}"
        )
    return Layout(tuple(slots), bytes(blob[: 8 + length]), data_size), 8 + length


def _slot(key: str, entry: Any) -> Slot:
    if not isinstance(entry, dict):
        raise TensorFileError(f"bad header entry for {key!r}: {entry!r:.80}")
    name: Any = entry.get("dtype")
    shape: Any = entry.get("shape")
    offsets: Any = entry.get("data_offsets")
    dtype = BY_NAME.get(name) if isinstance(name, str) else None
    if dtype is None:
        raise TensorFileError(f"tensor {key!r}: unknown dtype {name!r:.40}")
    if not (_naturals(shape) and len(shape) <= MAX_DIMS):
        raise TensorFileError(
            f"tensor {key!r}: shape {shape!r:.80} is not a list of at most {MAX_DIMS} "
            "non-negative integers"
        )
    if not (_naturals(offsets) and len(offsets) == 2):
        raise TensorFileError(f"tensor {key!r}: data_offsets {offsets!r:.80} are not [start, end]")
    start, end = offsets
    if end - start != math.prod(shape) * dtype.itemsize:
        raise TensorFileError(f"tensor {key!r}: offsets {start}..{end} do not match its shape")
    return Slot(key, dtype, tuple(shape), start, end)


def _naturals(value: Any) -> TypeGuard[list[int]]:
    """A list of non-negative ints below 2**63 (no bools, floats or strings)."""
    return isinstance(value, list) and all(type(v) is int and 0 <= v < 2**63 for v in value)


def load(blob: bytearray) -> dict[str, torch.Tensor]:
    """Tensors viewing a whole file read into ``blob``; no code runs, no copy is made."""
    layout, start = parse_header(blob)
    for s in layout.slots:
        if s.start % s.dtype.itemsize:
            raise TensorFileError(f"tensor {s.key!r} is not aligned for {s.dtype}")
    if layout.data_size == 0:
        data = torch.empty(0, dtype=torch.uint8)
    else:
        data = torch.frombuffer(blob, dtype=torch.uint8, offset=start, count=layout.data_size)
    try:
        return views(layout, data)
    except RuntimeError as e:  # a shape torch cannot represent (e.g. 0 x 2**62 x 2**62)
        raise TensorFileError(f"a tensor cannot be viewed: {e}") from None
