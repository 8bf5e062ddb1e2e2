"""A safetensors-format file written straight from one preallocated host buffer.

The snapshot copies every tensor into one contiguous buffer laid out exactly like the data
section of a safetensors file, so writing the checkpoint is one sequential write of a
header plus that buffer (as fast as a raw copy of the bytes), and the result opens with
``safetensors.torch.load_file`` too. Tensors are placed largest element size first, so every
tensor starts aligned for its dtype and can be read back as a zero-copy view.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import torch

from . import tensorheader
from .tensorheader import TensorFileError as TensorFileError

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
# within one element size, tensors under this many bytes come first: the small ones a
# fine-tune changes (LoRA/adapters, their optimizer state) then share a few upload parts
# instead of dirtying every part of the frozen backbone they sit between by name (partdelta)
SMALL = 4 * 1024 * 1024


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
    """Lay tensors out by descending element size so each one is aligned for its dtype; within
    one element size the small ones (< SMALL bytes) first, then by key. The order depends only
    on keys, dtypes and shapes, so an unchanged tensor sits at the same offset next time."""
    for key, t in tensors.items():
        if t.dtype not in DTYPES:
            raise TensorFileError(f"tensor {key!r} has dtype {t.dtype}, which cannot be saved")
    order = sorted(
        tensors,
        key=lambda k: (
            -tensors[k].element_size(),
            tensors[k].numel() * tensors[k].element_size() >= SMALL,
            k,
        ),
    )
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
    """(layout, data start) from the beginning of a file, checked by ``tensorheader.parse``."""
    header = tensorheader.parse(blob)
    slots = tuple(Slot(e.key, BY_NAME[e.dtype], e.shape, e.start, e.end) for e in header.entries)
    return Layout(slots, bytes(blob[: header.length]), header.data_size), header.length


def load(blob: bytearray) -> dict[str, torch.Tensor]:
    """Tensors viewing a whole file read into ``blob``; no code runs, no copy is made."""
    layout, start = parse_header(blob)
    if layout.data_size == 0:
        data = torch.empty(0, dtype=torch.uint8)
    else:
        data = torch.frombuffer(blob, dtype=torch.uint8, offset=start, count=layout.data_size)
    try:
        return views(layout, data)
    except RuntimeError as e:  # a shape torch cannot represent (e.g. 0 x 2**62 x 2**62)
        raise TensorFileError(f"a tensor cannot be viewed: {e}") from None
