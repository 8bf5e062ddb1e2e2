"""An in-memory copy of the training state, taken into one reused host buffer.

Taking the snapshot is the only part of a periodic save that stalls training: a copy of every
tensor into a buffer allocated once (pinned when the state lives on a GPU) and reused while the
layout stays the same. The host keeps at most this one extra copy of the state.
"""

from __future__ import annotations

import torch

from . import tensorfile


class SnapshotBuffer:
    """Owns the host buffer; ``take`` fills it and returns the tensors' layout."""

    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None
        self._layout: tensorfile.Layout | None = None

    @property
    def capacity(self) -> int:
        return 0 if self._buffer is None else self._buffer.numel()

    def take(self, tensors: dict[str, torch.Tensor]) -> tuple[tensorfile.Layout, torch.Tensor]:
        """Copy ``tensors`` into the buffer; returns (layout, the filled data section)."""
        layout = self._layout_for(tensors)
        data = self._data(layout.data_size, any(t.is_cuda for t in tensors.values()))
        targets = tensorfile.views(layout, data)
        with torch.no_grad():
            for key, target in targets.items():
                source = tensors[key]
                target.copy_(source.detach(), non_blocking=source.is_cuda)
        if any(t.is_cuda for t in tensors.values()):
            torch.cuda.synchronize()
        return layout, data

    def _layout_for(self, tensors: dict[str, torch.Tensor]) -> tensorfile.Layout:
        signature = tuple(sorted((k, t.dtype, tuple(t.shape)) for k, t in tensors.items()))
        if self._layout is None or tuple(sorted(self._layout.signature())) != signature:
            self._layout = tensorfile.plan(tensors)
        return self._layout

    def _data(self, size: int, pinned: bool) -> torch.Tensor:
        if self._buffer is None or self._buffer.numel() < size:
            self._buffer = None  # free the old one before allocating the larger one
            self._buffer = torch.empty(
                max(size, 1), dtype=torch.uint8, pin_memory=pinned and torch.cuda.is_available()
            )
        return self._buffer[:size]
