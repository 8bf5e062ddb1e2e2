import struct

import pytest
import torch
from safetensors.torch import load_file

from spotrun import tensorfile, tensorheader
from spotrun.snapshot import SnapshotBuffer

pytestmark = pytest.mark.unit


def _tensors() -> dict[str, torch.Tensor]:
    return {
        "a/u8": torch.arange(7, dtype=torch.uint8),
        "b/f64": torch.randn(3, 3, dtype=torch.float64),
        "c/bf16": torch.randn(5).to(torch.bfloat16),
        "d/scalar": torch.tensor(2.5),
        "e/empty": torch.empty(0, 4),
        "f/bool": torch.tensor([True, False, True]),
    }


def test_written_file_is_valid_safetensors_and_reads_back_zero_copy(tmp_path) -> None:
    tensors = _tensors()
    layout, data, _ = SnapshotBuffer().take(tensors)
    path = tmp_path / "t.safetensors"
    path.write_bytes(layout.header + data.numpy().tobytes())
    theirs = load_file(str(path))
    ours = tensorfile.load(bytearray(path.read_bytes()))
    for key, t in tensors.items():
        assert theirs[key].equal(t) and ours[key].equal(t), key
        assert ours[key].dtype == t.dtype


def test_snapshot_buffer_is_reused_across_saves() -> None:
    buffer = SnapshotBuffer()
    _, first, _ = buffer.take(_tensors())
    _, second, _ = buffer.take(_tensors())
    assert first.data_ptr() == second.data_ptr()


@pytest.mark.parametrize("blob", [b"", b"\x05\x00\x00\x00\x00\x00\x00\x00{}", b"\xff" * 16])
def test_garbage_is_rejected_not_crashed_on(blob: bytes) -> None:
    with pytest.raises(tensorfile.TensorFileError):
        tensorfile.load(bytearray(blob))


def test_the_torch_free_header_knows_every_dtype_torch_saves_with_its_size() -> None:
    # the sidecar checks tensor headers with tensorheader (no torch); it must agree with torch
    assert {name: dtype.itemsize for dtype, name in tensorfile.DTYPES.items()} == (
        tensorheader.ITEMSIZE
    )


def test_a_misaligned_tensor_is_refused_before_any_view() -> None:
    body = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[1,5]},'
    body += b'"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    blob = struct.pack("<Q", len(body)) + body + bytes(5)
    with pytest.raises(tensorheader.TensorFileError, match="not aligned"):
        tensorheader.parse(blob)
    with pytest.raises(tensorfile.TensorFileError, match="not aligned"):
        tensorfile.load(bytearray(blob))
