"""The pure decisions of delta uploads: which parts are copied, which sent, and when."""

import logging

import pytest

from spotrun import partdelta
from spotrun.partdelta import DurableFile, PartMemory
from spotrun.s3store import TransferSettings

pytestmark = pytest.mark.unit

MIB = 2**20


def _durable(key: str = "p/checkpoints/step-000000000001/tensors.safetensors") -> DurableFile:
    parts = [b"a" * MIB, b"b" * MIB, b"c" * 100]
    return DurableFile(key, '"etag-1"', 2 * MIB + 100, MIB, tuple(map(partdelta.digest, parts)))


NEW_KEY = "p/checkpoints/step-000000000002/tensors.safetensors"


def _copied(previous: DurableFile | None, key: str, size: int, part_size: int,
            digests: list[bytes]) -> list[bool]:
    """Per part, whether S3Store._multipart copies it: as it decides (reusable, unchanged)."""
    if not partdelta.reusable(previous, key, size, part_size):
        return [False] * len(digests)
    assert previous is not None
    return [partdelta.unchanged(previous, i, d) for i, d in enumerate(digests)]


def test_only_parts_whose_digest_matches_the_same_index_are_copied() -> None:
    new = [partdelta.digest(b) for b in (b"a" * MIB, b"B" * MIB, b"c" * 100)]
    assert _copied(_durable(), NEW_KEY, 2 * MIB + 100, MIB, new) == [True, False, True]
    # a part equal to another index's part is sent: only same offsets count
    swapped = [new[0], partdelta.digest(b"a" * MIB), new[2]]
    assert _copied(_durable(), NEW_KEY, 2 * MIB + 100, MIB, swapped) == [True, False, True]


@pytest.mark.parametrize(
    ("key", "size", "part_size", "why"),
    [
        (NEW_KEY, 2 * MIB + 101, MIB, "another size: offsets moved"),
        (NEW_KEY, 2 * MIB + 100, 2 * MIB, "another part size"),
        (_durable().key, 2 * MIB + 100, MIB, "the same object"),
    ],
)
def test_nothing_is_copied_when_the_previous_file_does_not_line_up(
    key: str, size: int, part_size: int, why: str
) -> None:
    digests = list(_durable().digests)
    assert _copied(_durable(), key, size, part_size, digests) == [False] * 3, why
    assert _copied(None, NEW_KEY, 2 * MIB + 100, MIB, digests) == [False] * 3


def test_a_previous_file_without_an_etag_is_never_copied_from() -> None:
    durable = _durable()
    bare = DurableFile(durable.key, "", durable.size, durable.part_size, durable.digests)
    assert not partdelta.reusable(bare, NEW_KEY, durable.size, durable.part_size)


def test_copy_ranges_are_inclusive_and_the_last_one_is_short() -> None:
    assert partdelta.copy_range(0, 2 * MIB + 100, MIB) == f"bytes=0-{MIB - 1}"
    assert partdelta.copy_range(2, 2 * MIB + 100, MIB) == f"bytes={2 * MIB}-{2 * MIB + 99}"


@pytest.mark.parametrize(
    ("code", "failure"),
    [
        ("NotImplemented", "unsupported"),
        ("501", "unsupported"),
        ("NoSuchKey", "source"),
        ("PreconditionFailed", "source"),
        ("InvalidRange", "source"),
        ("SlowDown", "other"),
        ("InternalError", "other"),
        ("AccessDenied", "other"),
    ],
)
def test_copy_failures_are_told_apart(code: str, failure: str) -> None:
    assert partdelta.copy_failure(code) == failure


def test_memory_forgets_only_the_object_it_was_told_of_and_turns_off_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    memory = PartMemory(enabled=True)
    old, new = _durable(), _durable(NEW_KEY)
    memory.remember("tensors.safetensors", new)
    memory.forget("tensors.safetensors", old.key)  # a stale failure: the newer record stays
    assert memory.get("tensors.safetensors") is new
    memory.forget("tensors.safetensors", NEW_KEY)
    assert memory.get("tensors.safetensors") is None
    memory.remember("tensors.safetensors", new)
    with caplog.at_level(logging.WARNING, logger="spotrun"):
        memory.disable("no UploadPartCopy")
        memory.disable("no UploadPartCopy")
    assert memory.get("tensors.safetensors") is None
    memory.remember("tensors.safetensors", new)
    assert memory.get("tensors.safetensors") is None
    assert [r.getMessage() for r in caplog.records] == [
        "spotrun: delta uploads off for this run, every part is sent: no UploadPartCopy"
    ]


def test_a_memory_turned_off_remembers_nothing() -> None:
    memory = PartMemory(enabled=False)
    memory.remember("tensors.safetensors", _durable())
    assert memory.get("tensors.safetensors") is None


@pytest.mark.parametrize(("value", "delta"), [(None, True), ("1", True), ("0", False)])
def test_spotrun_s3_delta_turns_the_delta_on_and_off(
    monkeypatch: pytest.MonkeyPatch, value: str | None, delta: bool
) -> None:
    if value is None:
        monkeypatch.delenv("SPOTRUN_S3_DELTA", raising=False)
    else:
        monkeypatch.setenv("SPOTRUN_S3_DELTA", value)
    assert TransferSettings.from_env().delta is delta


def test_small_tensors_a_fine_tune_changes_share_the_first_parts_of_their_dtype() -> None:
    """By name, LoRA adapters sit between the frozen matrices of each layer; by size they
    come first, so the frozen bytes form one run that later checkpoints leave unchanged."""
    import torch

    from spotrun import tensorfile

    big, small = (2048, 1024), (8, 1024)  # 8 MiB frozen, 32 KiB adapter (float32)
    state = {
        f"model/layers.{i}.{name}": torch.zeros(shape)
        for i in range(3)
        for name, shape in (("lora_A", small), ("q.weight", big), ("v.weight", big))
    }
    state["model/norm.weight"] = torch.zeros(1024)
    state["rng"] = torch.zeros(5056, dtype=torch.uint8)
    slots = tensorfile.plan(state).slots
    sizes = [s.end - s.start for s in slots]
    assert [s.key for s in slots][:4] == [
        "model/layers.0.lora_A",
        "model/layers.1.lora_A",
        "model/layers.2.lora_A",
        "model/norm.weight",
    ]
    assert all(n >= tensorfile.SMALL for n in sizes[4:-1]) and slots[-1].key == "rng"
    assert all(s.start % 4 == 0 for s in slots[:-1])  # still aligned for float32
    # the order depends on keys, dtypes and shapes only: new values, same offsets
    assert tensorfile.plan({k: torch.ones_like(t) for k, t in state.items()}).slots == slots
