"""An in-memory copy of the training state, taken into one reused host buffer.

A periodic save copies every tensor into a buffer allocated once (pinned when the state lives on
a GPU) and reused while the layout stays the same; the host keeps at most this one extra copy.
Parameters and optimizer state only change inside ``optimizer.step()``, so their copy can run in
the writer thread during the next forward/backward (the optimizer waits for it); everything
else (buffers such as BatchNorm statistics, RNG, extras) is copied before training resumes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import tensorfile

ALIGN = tensorfile.ALIGN


class SnapshotBuffer:
    """Owns the host buffer; ``take`` fills it and returns the tensors' layout."""

    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None
        self._layout: tensorfile.Layout | None = None
        self._region: torch.Tensor | None = None

    @property
    def capacity(self) -> int:
        return 0 if self._buffer is None else self._buffer.numel()

    def take(
        self, tensors: dict[str, torch.Tensor], deferred: frozenset[str] = frozenset()
    ) -> tuple[tensorfile.Layout, torch.Tensor, Callable[[], None]]:
        """Copy ``tensors`` into the buffer, except the ``deferred`` keys: those are copied by
        the returned function (the writer thread calls it while training goes on).

        Returns (layout, the data section, copy_deferred)."""
        layout = self._layout_for(tensors)
        data = self._place(layout, any(t.is_cuda for t in tensors.values()))
        targets = tensorfile.views(layout, data)
        _copy(targets, tensors, [k for k in targets if k not in deferred])
        later = [k for k in targets if k in deferred]
        return layout, data, lambda: _copy(targets, tensors, later)

    def file_image(self) -> tuple[memoryview, int]:
        """The whole tensor file (header + data) of the last ``take``: a page-aligned view
        padded to whole pages, and the file's real size."""
        assert self._region is not None and self._layout is not None, "take() first"
        return self._region.numpy().data, self._layout.file_size

    def _layout_for(self, tensors: dict[str, torch.Tensor]) -> tensorfile.Layout:
        signature = tuple(sorted((k, t.dtype, tuple(t.shape)) for k, t in tensors.items()))
        if self._layout is None or tuple(sorted(self._layout.signature())) != signature:
            self._layout = tensorfile.plan(tensors)
        return self._layout

    def _place(self, layout: tensorfile.Layout, pinned: bool) -> torch.Tensor:
        """Lay [header][data][padding] out at a page boundary of the buffer; return the data."""
        padded = -(-layout.file_size // ALIGN) * ALIGN
        if self._buffer is None or self._buffer.numel() < padded + ALIGN:
            self._buffer = None  # free the old one before allocating the larger one
            self._buffer = torch.empty(
                padded + ALIGN, dtype=torch.uint8, pin_memory=pinned and torch.cuda.is_available()
            )
        offset = -self._buffer.data_ptr() % ALIGN
        self._region = self._buffer[offset : offset + padded]
        header = len(layout.header)
        self._region[:header].copy_(torch.frombuffer(bytearray(layout.header), dtype=torch.uint8))
        return self._region[header : header + layout.data_size]


def _copy(
    targets: dict[str, torch.Tensor], sources: dict[str, torch.Tensor], keys: list[str]
) -> None:
    cuda = False
    with torch.no_grad():
        for key in keys:
            source = sources[key]
            cuda = cuda or source.is_cuda
            targets[key].copy_(source.detach(), non_blocking=source.is_cuda)
    if cuda:
        torch.cuda.current_stream().synchronize()
