"""A seeded generator of malformed checkpoints, shared by the unit and integration fuzz tests.

Every case is derived from one valid checkpoint (``Source``) and is INVALID by construction:
a bad manifest (JSON, schema, file names that traverse or point at a canary file with its real
size and CRC32C), or payloads whose CRC32C matches but that do not decode (tensor header,
state.json, RNG state), or (local only) links, FIFOs and folders where files should be.
Nothing here can produce a checkpoint of another model or of a newer format version: those
are configuration errors that raise by design.
"""

from __future__ import annotations

import copy
import json
import os
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spotrun import checksum, layout

TENSORS, STRUCTURE, MANIFEST = layout.TENSORS, layout.STRUCTURE, layout.MANIFEST


@dataclass(frozen=True)
class Canary:
    """A folder beside the checkpoint root holding a file hostile manifests point at."""

    dir: Path
    secret: bytes

    @property
    def file(self) -> Path:
        return self.dir / "secret"


@dataclass
class Case:
    kind: str
    step: int
    files: dict[str, bytes]  # name inside the step folder -> bytes (MANIFEST.json included)
    special: str | None = None  # local only: how the folder is made hostile (see place_local)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"case {self.kind} at step {self.step}"


@dataclass(frozen=True)
class Source:
    """A valid checkpoint's manifest, tensor file header entries, data section and state."""

    manifest: dict[str, Any]
    header: dict[str, Any]
    data: bytes
    structure: Any

    @classmethod
    def from_folder(cls, folder: Path) -> Source:
        blob = (folder / TENSORS).read_bytes()
        (length,) = struct.unpack("<Q", blob[:8])
        return cls(
            json.loads((folder / MANIFEST).read_text()),
            json.loads(blob[8 : 8 + length]),
            blob[8 + length :],
            json.loads((folder / STRUCTURE).read_text()),
        )

    def checkpoint(
        self,
        step: int,
        header: Any = None,
        data: bytes | None = None,
        structure: Any = None,
        raw_header: bytes | None = None,
        raw_structure: bytes | None = None,
    ) -> dict[str, bytes]:
        """The files of this checkpoint at ``step`` with the given parts replaced, the
        manifest re-signed: sizes and CRC32Cs always match the payload bytes."""
        state = copy.deepcopy(self.structure) if structure is None else structure
        if structure is None:
            state["progress"]["step"] = step
        tensors = tensor_file(
            self.header if header is None else header,
            self.data if data is None else data,
            raw_header,
        )
        text = raw_structure if raw_structure is not None else json.dumps(state).encode()
        payload = {TENSORS: tensors, STRUCTURE: text}
        return {**payload, MANIFEST: json.dumps(self.signed(step, payload)).encode()}

    def signed(self, step: int, payload: dict[str, bytes]) -> dict[str, Any]:
        manifest = copy.deepcopy(self.manifest)
        manifest["step"] = step
        manifest["files"] = [entry(name, blob) for name, blob in payload.items()]
        return manifest


def entry(path: str, blob: bytes) -> dict[str, Any]:
    return {"path": path, "size": len(blob), "crc32c": checksum.to_hex(checksum.of_bytes(blob))}


def tensor_file(header: Any, data: bytes, raw_header: bytes | None = None) -> bytes:
    body = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(body)) + body + data


# -- the families -------------------------------------------------------------------------

Family = Callable[[random.Random, Source, Canary, int], Case]

HOSTILE_JSON = [
    b"{}",
    b"null",
    b"[]",
    b'"MANIFEST"',
    b"0",
    b"true",
    b"",
    b"   ",
    b"\xff\xfe{",
    b'{"format_version": 1, "format_version": 1}',
    b"NaN",
]


def _deep(rng: random.Random) -> bytes:
    depth = rng.choice([65, 200, 999, 1001, 5000, 100_000])
    return (
        (b"[" * depth + b"]" * depth)
        if rng.random() < 0.5
        else b'{"a":' * depth + b"1" + b"}" * depth
    )


def manifest_bytes(rng: random.Random, src: Source, canary: Canary, step: int) -> Case:
    """MANIFEST.json that is not a JSON object, too deep, truncated, too big or random bytes."""
    files = src.checkpoint(step)
    good = files[MANIFEST]
    choice = rng.randrange(6)
    if choice == 0:
        blob, kind = rng.choice(HOSTILE_JSON), "json-literal"
    elif choice == 1:
        blob, kind = _deep(rng), "json-deep"
    elif choice == 2:
        blob, kind = good[: rng.randrange(1, len(good) - 1)], "json-truncated"
    elif choice == 3:
        blob, kind = good[:-1] + b" " * (layout.MANIFEST_LIMIT + rng.randrange(4096)) + b"}", "big"
    elif choice == 4:
        blob, kind = rng.randbytes(rng.randrange(1, 512)), "json-random-bytes"
    else:
        blob, kind = json.dumps([json.loads(good)]).encode(), "json-list-of-manifest"
    files[MANIFEST] = blob
    return Case(f"manifest-{kind}", step, files)


BAD_FIELDS: dict[str, list[Any]] = {
    "format_version": [None, 0, -1, "1", 1.0, True, [], {}],
    "step": [None, -1, "STEP", 2.0, True, 1, 10**13, []],
    "epoch": [None, -1, "0", 0.5, True, [], {}],
    "time": [None, 5, "yesterday", "2026-01-01T00:00:00", "", [], "9999-99-99T00:00:00Z"],
    "metrics": [[], "x", 5, {"loss": "a"}, {"loss": None}, {"loss": [1]}, {"loss": {}}],
    "files": [None, {}, "x", [[]], [{}], [None], 5],
    "reason": [5, None, [], {}],
    "writer": [5, None, []],
    "attempt": ["1", 1.5, True, []],
    "job": [5, [], {}],
}
BAD_ENTRY: dict[str, list[Any]] = {
    "size": [-1, "10", 1.5, True, None],
    "crc32c": ["", "XYZ", "0000000g", "ABCDEF01", 12345678, None, "0" * 9],
    "path": [None, 5, [], {}],
}


def manifest_schema(rng: random.Random, src: Source, canary: Canary, step: int) -> Case:
    """A JSON object that breaks the manifest schema in one (or a few) places."""
    files = src.checkpoint(step)
    manifest = json.loads(files[MANIFEST])
    notes = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        choice = rng.randrange(4)
        if choice == 0:
            name = rng.choice(sorted(BAD_FIELDS))
            value = rng.choice(BAD_FIELDS[name])
            if name == "step" and value == 1:
                value = step - 1 if step > 1 else 0  # the folder disagrees
            manifest[name] = value
            notes.append(f"{name}={value!r:.40}")
        elif choice == 1:
            name = rng.choice(["format_version", "step", "epoch", "time", "files"])
            manifest.pop(name, None)
            notes.append(f"no {name}")
        elif choice == 2 and isinstance(manifest.get("files"), list) and manifest["files"]:
            target = rng.choice(manifest["files"])
            if isinstance(target, dict):
                name = rng.choice(sorted(BAD_ENTRY))
                target[name] = rng.choice(BAD_ENTRY[name])
                notes.append(f"files[].{name}={target[name]!r:.40}")
            else:
                notes.append("files[] entry not an object")
        else:
            entries = manifest.get("files")
            if isinstance(entries, list) and entries and isinstance(entries[0], dict):
                entries[0]["mode"] = 0o777
                notes.append("files[] extra field")
            else:
                manifest["format_version"] = None
                notes.append("format_version=None")
    files[MANIFEST] = json.dumps(manifest).encode()
    return Case("manifest-schema", step, files, notes=notes)


def hostile_paths(canary: Canary, step: int) -> list[str]:
    up = "../" * 3  # from <tmp>/<root>/checkpoints/step-N/ to <tmp>
    return [
        f"{up}{canary.dir.name}/secret",
        f"../../../../../../../../..{canary.file}",
        str(canary.file),
        "/etc/passwd",
        f"../{layout.step_dirname(1)}/{TENSORS}",
        f"sub/{TENSORS}",
        f"./{TENSORS}",
        f"{TENSORS}/",
        f"{TENSORS}/..",
        "",
        ".",
        "..",
        MANIFEST,
        f"{TENSORS}\x00",
        f"..\\..\\{canary.dir.name}\\secret",
        TENSORS.upper(),
        f"{TENSORS} ",
        "tensors\u2024safetensors",
        "extra.bin",
        f"{layout.TMP_PREFIX}x/{TENSORS}",
    ]


def manifest_paths(rng: random.Random, src: Source, canary: Canary, step: int) -> Case:
    """File names that are not the format's: traversal, absolute, nested, duplicates, extras.
    Traversal entries carry the real size and CRC32C of the file they point at."""
    files = src.checkpoint(step)
    manifest = json.loads(files[MANIFEST])
    entries = manifest["files"]
    choice = rng.randrange(4)
    if choice == 0:
        path = rng.choice(hostile_paths(canary, step))
        index = rng.randrange(len(entries))
        blob = canary.secret if "secret" in path or str(canary.file) in path else files[TENSORS]
        entries[index] = entry(path, blob)
        kind = f"path {path!r:.60}"
    elif choice == 1:
        entries.append(dict(entries[rng.randrange(len(entries))]))
        kind = "duplicate entry"
    elif choice == 2:
        del entries[rng.randrange(len(entries))]
        kind = "missing entry"
    else:
        entries.append(entry(rng.choice(hostile_paths(canary, step)), canary.secret))
        kind = "extra entry"
    files[MANIFEST] = json.dumps(manifest).encode()
    return Case("manifest-paths", step, files, notes=[kind])


def _tensor_names(src: Source) -> list[str]:
    return sorted(k for k in src.header if k != "__metadata__")


def header_values(rng: random.Random, src: Source, canary: Canary, step: int) -> Case:
    """A tensor header entry with a bad dtype, shape or offsets (the data section unchanged)."""
    header = copy.deepcopy(src.header)
    key = rng.choice(_tensor_names(src))
    item = header[key]
    shape, (start, end) = item["shape"], item["data_offsets"]
    mutations: list[tuple[str, Callable[[], None]]] = [
        ("negative-dim", lambda: item.update(shape=[-abs(d) or -1 for d in shape] or [-1])),
        ("negative-pair", lambda: item.update(shape=[-1, -(end - start) // 4 or -1])),
        ("float-dim", lambda: item.update(shape=[float(d) for d in shape] or [1.0])),
        ("string-dim", lambda: item.update(shape=[str(d) for d in shape] or ["1"])),
        ("bool-dim", lambda: item.update(shape=[True] * max(len(shape), 1))),
        ("wrong-product", lambda: item.update(shape=[*shape, rng.randrange(2, 9)])),
        ("many-dims", lambda: item.update(shape=[1] * rng.randrange(33, 100))),
        ("huge-dims", lambda: item.update(shape=[0, 2**62, 2**62])),
        ("reversed", lambda: item.update(data_offsets=[end, start])),
        ("overlap", lambda: item.update(data_offsets=[max(start - 4, 0), end - 4 or 1])),
        ("out-of-range", lambda: item.update(data_offsets=[start + 2**40, end + 2**40])),
        ("negative-start", lambda: item.update(data_offsets=[-4, end - start - 4])),
        ("three-offsets", lambda: item.update(data_offsets=[start, end, end])),
        ("float-offsets", lambda: item.update(data_offsets=[float(start), float(end)])),
        ("unknown-dtype", lambda: item.update(dtype=rng.choice(["F33", "f32", "", "OBJECT"]))),
        ("dtype-type", lambda: item.update(dtype=rng.choice([None, 5, ["F32"], {}]))),
        ("wider-dtype", lambda: item.update(dtype="F64" if item["dtype"] != "F64" else "U8")),
        ("no-shape", lambda: item.pop("shape")),
        ("no-offsets", lambda: item.pop("data_offsets")),
        ("entry-not-object", lambda: header.update({key: rng.choice([5, "x", [], None])})),
        ("metadata-list", lambda: header.update(__metadata__=["x"])),
        ("metadata-values", lambda: header.update(__metadata__={"a": 1})),
        ("same-offsets", lambda: _share_offsets(rng, header, key)),
    ]
    name, mutate = rng.choice(mutations)
    mutate()
    return Case(f"header-{name}", step, src.checkpoint(step, header=header), notes=[key])


def _share_offsets(rng: random.Random, header: dict[str, Any], key: str) -> None:
    """Two tensors claim the same bytes (a same-size neighbour's offsets)."""
    other = rng.choice([k for k in header if k not in (key, "__metadata__")])
    header[other]["data_offsets"] = list(header[key]["data_offsets"])
    header[other]["shape"] = list(header[key]["shape"])
    header[other]["dtype"] = header[key]["dtype"]


def header_framing(rng: random.Random, src: Source, canary: Canary, step: int) -> Case:
    """The 8-byte length, the header JSON itself, or the size of the data section."""
    body = json.dumps(src.header).encode()
    choice = rng.randrange(9)
    if choice == 0:
        raw = struct.pack("<Q", rng.choice([2**63, 2**40, len(body) + 10**6])) + body + src.data
        blob = raw
        kind = "length-too-big"
    elif choice == 1:
        cut = rng.randrange(1, len(body))
        blob = struct.pack("<Q", cut) + body + src.data
        kind = "length-too-small"
    else:
        kind, raw_header, data = _framing_body(rng, src, body, choice)
        blob = tensor_file(None, data, raw_header)
    files = src.checkpoint(step)
    files[TENSORS] = blob
    payload = {TENSORS: blob, STRUCTURE: files[STRUCTURE]}
    files[MANIFEST] = json.dumps(src.signed(step, payload)).encode()
    return Case(f"header-{kind}", step, files)


def _framing_body(
    rng: random.Random, src: Source, body: bytes, choice: int
) -> tuple[str, bytes, bytes]:
    if choice == 2:
        return "not-json", body[: len(body) // 2], src.data
    if choice == 3:
        return "json-list", b"[]", src.data
    if choice == 4:
        return "json-deep", _deep(rng), src.data
    if choice == 5:
        key = rng.choice(_tensor_names(src))
        dup = json.dumps(src.header[key])
        return "duplicate-key", body[:-1] + f',"{key}":{dup}}}'.encode(), src.data
    if choice == 6:
        return "data-truncated", body, src.data[: rng.randrange(len(src.data))]
    if choice == 7:
        return "data-extra", body, src.data + rng.randbytes(rng.randrange(1, 64))
    header = {"pad": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}
    for k in _tensor_names(src):  # everything shifted by one byte: misaligned for its dtype
        s, e = src.header[k]["data_offsets"]
        header[k] = {**src.header[k], "data_offsets": [s + 1, e + 1]}
    return "misaligned", json.dumps(header).encode(), b"\0" + src.data


def _refs(
    value: Any, path: tuple[Any, ...] = ()
) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Every tensor reference in a structure, with the path to it."""
    if isinstance(value, dict):
        if "__tensor__" in value:
            yield path, value
            return
        for k, v in value.items():
            yield from _refs(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _refs(v, (*path, i))


def _containers(value: Any) -> Iterator[dict[str, Any] | list[Any]]:
    """Every plain (untagged) dict and list in a structure."""
    if isinstance(value, dict):
        if any(k.startswith("__") for k in value):
            inner = [v for v in value.values() if isinstance(v, list | dict)]
        else:
            yield value
            inner = list(value.values())
    elif isinstance(value, list):
        yield value
        inner = value
    else:
        return
    for v in inner:
        yield from _containers(v)


BAD_TAGS: list[Any] = [
    {"__bytes__": "***not base64***"},
    {"__bytes__": 5},
    {"__float__": "not a float"},
    {"__float__": None},
    {"__tuple__": 5},
    {"__tuple__": "abc"},
    {"__dict__": 5},
    {"__dict__": [[[1], 2]]},
    {"__dict__": [[{"a": 1}, 2]]},
    {"__dict__": [[1]]},
    {"__dict__": [5]},
    {"__ndarray__": "rng/torch", "dtype": "O"},
    {"__ndarray__": "rng/torch", "dtype": "bogus"},
    {"__ndarray__": "rng/torch", "dtype": 5},
    {"__ndarray__": "no/such/tensor", "dtype": "<f4"},
    {"__tensor__": ["x"]},
    {"__tensor__": 5, "device": "cpu"},
    {"__tensor__": "rng/torch", "device": 7},
    {"__tensor__": "no/such/tensor", "device": "cpu"},
]


def state_values(rng: random.Random, src: Source, canary: Canary, step: int) -> Case:
    """state.json with a malformed tag or a dangling reference anywhere, or a top-level entry
    of the wrong type."""
    state = copy.deepcopy(src.structure)
    state["progress"]["step"] = step
    choice = rng.randrange(4)
    if choice == 0:  # a malformed tag replaces a random value, at any depth
        container = rng.choice(list(_containers(state)))
        bad = copy.deepcopy(rng.choice(BAD_TAGS))
        if isinstance(container, list) and container:
            container[rng.randrange(len(container))] = bad
        elif isinstance(container, dict) and container:
            container[rng.choice(sorted(container))] = bad
        else:
            state["model"] = bad
        kind = f"tag {json.dumps(bad)[:50]}"
    elif choice == 1:  # a reference to a tensor the file does not hold
        _, ref = rng.choice(list(_refs(state)))
        ref["__tensor__"] = rng.choice(["missing", "", "model/", ref["__tensor__"] + "x"])
        kind = "dangling reference"
    elif choice == 2:
        name = rng.choice(["model", "rng", "progress"])
        del state[name]
        kind = f"no {name}"
    else:
        name = rng.choice(["model", "optimizer", "extras", "progress", "rng", "model-values"])
        value: Any = rng.choice([5, "x", [], None, True])
        if name == "model-values":
            state["model"][rng.choice(sorted(state["model"]))] = value
        elif name == "progress":
            state["progress"] = rng.choice([value, {"step": str(step)}, {"step": step + 1}, {}])
        else:
            state[name] = value
        kind = f"{name} of the wrong type"
    return Case("state", step, src.checkpoint(step, structure=state), notes=[kind])


def state_bytes(rng: random.Random, src: Source, canary: Canary, step: int) -> Case:
    """state.json that is not a JSON object of a state at all."""
    good = json.dumps(src.structure).encode()
    raw = rng.choice(
        [
            *HOSTILE_JSON,
            _deep(rng),
            good[: rng.randrange(1, len(good))],
            rng.randbytes(rng.randrange(1, 256)),
            b'{"model": {}, "model": {}}',
        ]
    )
    return Case("state-bytes", step, src.checkpoint(step, raw_structure=raw))


def rng_state(rng: random.Random, src: Source, canary: Canary, step: int) -> Case:
    """A malformed python, numpy, torch or cuda generator state."""
    state = copy.deepcopy(src.structure)
    state["progress"]["step"] = step
    r = state["rng"]
    python = r["python"]["__tuple__"]
    numpy = r["numpy"]
    mutations: list[tuple[str, Callable[[], None]]] = [
        ("python-version", lambda: python.__setitem__(0, rng.choice([9, -1, "3", None]))),
        ("python-short", lambda: python[1]["__tuple__"].pop()),
        ("python-range", lambda: python[1]["__tuple__"].__setitem__(0, -1)),
        ("python-index", lambda: python[1]["__tuple__"].__setitem__(-1, 10**6)),
        ("python-gauss", lambda: python.__setitem__(2, "gauss")),
        ("python-arity", lambda: python.append(0)),
        ("python-type", lambda: r.__setitem__("python", rng.choice([5, "x", [], None]))),
        ("numpy-generator", lambda: numpy.__setitem__("bit_generator", "PCG64")),
        ("numpy-pos", lambda: numpy["state"].__setitem__("pos", rng.choice([-1, 625, 10**9]))),
        ("numpy-pos-type", lambda: numpy["state"].__setitem__("pos", rng.choice(["3", 1.5]))),
        ("numpy-key", lambda: numpy["state"]["key"].__setitem__("__ndarray__", "rng/torch")),
        ("numpy-key-type", lambda: numpy["state"].__setitem__("key", [1, 2, 3])),
        ("numpy-gauss", lambda: numpy.__setitem__("gauss", "x")),
        ("numpy-no-state", lambda: numpy.pop("state")),
        ("numpy-type", lambda: r.__setitem__("numpy", rng.choice([5, [], None]))),
        ("torch-other-tensor", lambda: r["torch"].__setitem__("__tensor__", _model_key(src))),
        ("torch-type", lambda: r.__setitem__("torch", rng.choice([5, "x", [], None]))),
        ("cuda", lambda: r.__setitem__("cuda", rng.choice([5, "x", [1], [{"a": 1}]]))),
        ("missing", lambda: r.pop(rng.choice(["python", "numpy", "torch"]))),
        ("not-a-mapping", lambda: state.__setitem__("rng", rng.choice([5, [], "x"]))),
    ]
    name, mutate = rng.choice(mutations)
    mutate()
    return Case(f"rng-{name}", step, src.checkpoint(step, structure=state))


def _model_key(src: Source) -> str:
    return next(k for k in _tensor_names(src) if k.startswith("model/"))


LOCAL_SPECIALS = [
    "folder-link",  # the step folder is a symlink to a VALID checkpoint of this step
    "folder-file",  # the step folder is a regular file
    "manifest-link",  # MANIFEST.json links to a valid manifest outside
    "payload-link",  # tensors.safetensors links to an identical file outside
    "manifest-fifo",
    "payload-fifo",
    "payload-dir",
    "unicode-digits",  # a valid checkpoint in a folder named with Arabic-Indic digits
    "newline-name",  # a valid checkpoint in "step-...\n"
]


def local_special(rng: random.Random, src: Source, canary: Canary, step: int) -> Case:
    """Links, FIFOs and folders where a checkpoint's files should be (local disk only). The
    folder-level ones hold a VALID checkpoint: following the link, or parsing the name, would
    restore it instead of the older one."""
    return Case("local", step, src.checkpoint(step), special=rng.choice(LOCAL_SPECIALS))


FAMILIES: list[Family] = [
    manifest_bytes,
    manifest_schema,
    manifest_paths,
    header_values,
    header_framing,
    state_values,
    state_bytes,
    rng_state,
]


def generate(
    seed: int, count: int, src: Source, canary: Canary, first_step: int = 2, local: bool = True
) -> Iterator[Case]:
    """``count`` invalid cases, case i at step ``first_step + i``, every family in turn."""
    rng = random.Random(seed)
    families = [*FAMILIES, local_special] if local else FAMILIES
    for i in range(count):
        yield families[i % len(families)](rng, src, canary, first_step + i)


# -- placing a case -----------------------------------------------------------------------


def place_local(case: Case, checkpoints: Path, canary: Canary) -> str:
    """Write ``case`` under ``checkpoints``; returns the folder name it occupies."""
    name = layout.step_dirname(case.step)
    folder = checkpoints / name
    special = case.special
    if special in ("unicode-digits", "newline-name"):
        digits = name.removeprefix("step-")
        name = (
            "step-" + "".join(chr(0x660 + int(d)) for d in digits)
            if special == "unicode-digits"
            else name + "\n"
        )
        folder = checkpoints / name
    if special in ("folder-link", "folder-file"):
        outside = canary.dir / f"valid-{case.step}"
        _write_folder(outside, case.files)
        if special == "folder-link":
            folder.symlink_to(outside, target_is_directory=True)
        else:
            folder.write_bytes(case.files[MANIFEST])
        return name
    _write_folder(folder, case.files)
    if special in ("manifest-link", "payload-link"):
        target = MANIFEST if special == "manifest-link" else TENSORS
        outside = canary.dir / f"{target}-{case.step}"
        outside.write_bytes(case.files[target])
        (folder / target).unlink()
        (folder / target).symlink_to(outside)
    elif special in ("manifest-fifo", "payload-fifo"):
        target = MANIFEST if special == "manifest-fifo" else TENSORS
        (folder / target).unlink()
        os.mkfifo(folder / target)
    elif special == "payload-dir":
        (folder / TENSORS).unlink()
        (folder / TENSORS).mkdir()
        (folder / TENSORS / "x").write_bytes(b"x")
    return name


def _write_folder(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir()
    for path, blob in files.items():
        (folder / path).write_bytes(blob)


def tree(top: Path) -> set[str]:
    """Every entry under ``top`` (links not followed), relative."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(top):
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), top))
    return out
