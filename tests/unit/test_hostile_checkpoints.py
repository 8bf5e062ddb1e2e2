"""Hostile and broken checkpoints on local disk (issue 10, items 1, 4 and 8).

Each case sits as the NEWEST checkpoint above an older valid one (step 1). Restore must fall
back to step 1 with one log line naming the cause; ``spotrun ls / verify / inspect`` must
report it invalid, exit with the documented code and never open or create anything outside
the checkpoint folder. The fuzz test runs >= 1000 generated cases the same way.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from spotrun import Checkpointer, CheckpointMismatchError, UnknownFormatError, cli, layout, mirror
from spotrun.localstore import LocalStore
from spotrun.manifest import ManifestError
from tests import hostile_checkpoints as hostile
from tests.unit.conftest import Net, train_steps

pytestmark = pytest.mark.unit

FUZZ_SEED = int(os.environ.get("SPOTRUN_FUZZ_SEED", "20261201"))
FUZZ_CASES = int(os.environ.get("SPOTRUN_FUZZ_CASES", "1000"))


@dataclass
class World:
    """<base>/run is the checkpoint root (valid step 1); <base>/canary is outside it."""

    base: Path
    root: Path
    canary: hostile.Canary
    source: hostile.Source

    @property
    def checkpoints(self) -> Path:
        return self.root / layout.CHECKPOINTS


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    base = tmp_path_factory.mktemp("hostile")
    root = base / "run"
    model = Net(4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ckpt = Checkpointer(root, model=model, optimizer=opt, interval_steps=1, handle_signals=False)
    train_steps(ckpt, model, opt, 2)
    ckpt.close()
    second = root / layout.CHECKPOINTS / layout.step_dirname(2)
    source = hostile.Source.from_folder(second)
    shutil.rmtree(second)
    canary_dir = base / "canary"
    canary_dir.mkdir()
    canary = hostile.Canary(canary_dir, b"the admin's secret\n")
    canary.file.write_bytes(canary.secret)
    return World(base, root, canary, source)


# -- running the commands --------------------------------------------------------------


@dataclass
class Ran:
    code: int
    out: str
    err: str


def spotrun(*argv: str) -> Ran:
    """``spotrun`` in-process, as a user runs it (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return Ran(code, out.getvalue(), err.getvalue())


def restore(root: Path) -> int:
    model = Net(4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ckpt = Checkpointer(root, model=model, optimizer=opt, handle_signals=False)
    try:
        return ckpt.restore()
    finally:
        ckpt.close()


class OpenAudit:
    """Every path the process opens (Python's 'open' audit event) while ``watching``."""

    paths: list[str] = []
    watching = False
    installed = False

    @classmethod
    @contextlib.contextmanager
    def watch(cls) -> Iterator[list[str]]:
        if not cls.installed:
            sys.addaudithook(cls._hook)
            cls.installed = True
        cls.paths = []
        cls.watching = True
        try:
            yield cls.paths
        finally:
            cls.watching = False

    @classmethod
    def _hook(cls, event: str, args: tuple[Any, ...]) -> None:
        if cls.watching and event == "open" and isinstance(args[0], str | os.PathLike):
            cls.paths.append(os.path.normpath(os.fspath(args[0])))


def outside(paths: list[str], folder: Path) -> list[str]:
    return [p for p in paths if os.path.abspath(p).startswith(str(folder))]


# -- the checks every case gets ----------------------------------------------------------


def check_case(world: World, case: hostile.Case, log: pytest.LogCaptureFixture) -> list[str]:
    """What went wrong for one case placed as the newest checkpoint (empty: all good)."""
    name = hostile.place_local(case, world.checkpoints, world.canary)
    listed = name in LocalStore(world.root).names() and layout.parse_step_dirname(name)
    before = hostile.tree(world.base)
    problems = []
    log.clear()
    try:
        with OpenAudit.watch() as opened:
            problems += _check_commands(world, case, bool(listed), log)
        if touched := outside(opened, world.canary.dir):
            problems.append(f"opened outside the checkpoint folder: {touched}")
    except Exception as e:  # noqa: BLE001 (the fuzz reports any escape as a failure)
        problems.append(f"uncaught {type(e).__name__}: {e}")
    created = {p for p in hostile.tree(world.base) - before if not p.startswith("run/")}
    if created:
        problems.append(f"created outside the checkpoint root: {sorted(created)}")
    _remove(world.checkpoints / name)
    return [f"{case} {case.special or ''} {case.notes}: {p}" for p in problems]


def _check_commands(
    world: World, case: hostile.Case, listed: bool, log: pytest.LogCaptureFixture
) -> list[str]:
    problems = []
    root, name = str(world.root), layout.step_dirname(case.step)
    step = restore(world.root)
    if step != 1:
        problems.append(f"restore gave step {step}, not the valid step 1")
    skips = [r for r in log.records if "skipping checkpoint" in r.getMessage()]
    if listed and len(skips) != 1:
        problems.append(f"{len(skips)} log lines for the skipped checkpoint, not 1")
    ls = spotrun("ls", root)
    rows = [line.split() for line in ls.out.splitlines()[1:]]
    if ls.code != 0 or any(r[0] == str(case.step) and r[-1] == "valid" for r in rows):
        problems.append(f"ls exited {ls.code} or listed it as valid:\n{ls.out}{ls.err}")
    verify = spotrun("verify", root)
    if verify.code != (2 if listed else 0) or f"{name}: ok" in verify.out:
        problems.append(f"verify exited {verify.code}:\n{verify.out}{verify.err}")
    newest = spotrun("inspect", root)
    if newest.code != 0 or "step        1\n" not in newest.out:
        problems.append(f"inspect exited {newest.code}:\n{newest.out}{newest.err}")
    that = spotrun("inspect", root, str(case.step))
    if that.code != 1 or that.out:
        problems.append(f"inspect {case.step} exited {that.code}:\n{that.out}{that.err}")
    return problems


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


# -- the generator is not vacuous ----------------------------------------------------------


def test_the_generators_source_checkpoint_is_valid_at_any_step(world: World) -> None:
    """Every case is this checkpoint with one thing broken: unbroken, it restores."""
    case = hostile.Case("control", 7, world.source.checkpoint(7))
    name = hostile.place_local(case, world.checkpoints, world.canary)
    try:
        assert restore(world.root) == 7
        assert spotrun("verify", str(world.root)).code == 0
    finally:
        _remove(world.checkpoints / name)


# -- the fuzz tier (local part) -----------------------------------------------------------


def test_fuzz_every_malformed_newest_checkpoint_falls_back_to_the_valid_one(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="spotrun")
    failures: list[str] = []
    kinds: set[str] = set()
    count = 0
    for case in hostile.generate(FUZZ_SEED, FUZZ_CASES, world.source, world.canary):
        failures += check_case(world, case, caplog)
        kinds.add(case.kind.split("-")[0] if case.special is None else case.special)
        count += 1
    assert count >= 1000 or FUZZ_CASES < 1000
    assert len(kinds) >= 10, kinds
    assert not failures, f"seed {FUZZ_SEED}: {len(failures)} failures:\n" + "\n".join(failures[:15])


# -- each item of the issue, one by one -------------------------------------------------------


def _place(world: World, step: int, files: dict[str, bytes]) -> Path:
    case = hostile.Case("explicit", step, files)
    return world.checkpoints / hostile.place_local(case, world.checkpoints, world.canary)


def _with_manifest(world: World, step: int, manifest: bytes) -> dict[str, bytes]:
    files = world.source.checkpoint(step)
    files[layout.MANIFEST] = manifest
    return files


def _signed_with(world: World, step: int, **change: Any) -> dict[str, bytes]:
    files = world.source.checkpoint(step)
    manifest = json.loads(files[layout.MANIFEST])
    manifest.update(change)
    files[layout.MANIFEST] = json.dumps(manifest).encode()
    return files


def _state_with(world: World, step: int, edit: Any) -> dict[str, bytes]:
    state = json.loads(json.dumps(world.source.structure))
    state["progress"]["step"] = step
    edit(state)
    return world.source.checkpoint(step, structure=state)


def _header_with(world: World, step: int, edit: Any) -> dict[str, bytes]:
    header = json.loads(json.dumps(world.source.header))
    edit(header)
    return world.source.checkpoint(step, header=header)


def _first_tensor(header: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = header[sorted(k for k in header if k != "__metadata__")[0]]
    return first


def _overlap(header: dict[str, Any]) -> None:
    keys = sorted(header, key=lambda k: header[k]["data_offsets"][0] if k != "__metadata__" else -1)
    a, b = header[keys[-2]], header[keys[-1]]
    b.update(dtype=a["dtype"], shape=a["shape"], data_offsets=a["data_offsets"])


MALFORMED: dict[str, Callable[[World, int], dict[str, bytes]]] = {
    "manifest {}": lambda w, s: _with_manifest(w, s, b"{}"),
    "manifest null": lambda w, s: _with_manifest(w, s, b"null"),
    "manifest a list": lambda w, s: _with_manifest(w, s, b"[1, 2]"),
    "manifest nested 100000 deep": lambda w, s: _with_manifest(w, s, b"[" * 10**5 + b"]" * 10**5),
    "manifest of the wrong schema": lambda w, s: _signed_with(w, s, epoch="zero"),
    "manifest too big": lambda w, s: _with_manifest(w, s, b" " * (layout.MANIFEST_LIMIT + 1)),
    "manifest naming a missing file": lambda w, s: {
        k: v for k, v in w.source.checkpoint(s).items() if k != layout.STRUCTURE
    },
    "negative shape": lambda w, s: _header_with(
        w, s, lambda h: _first_tensor(h).update(shape=[-1, -(_first_tensor(h)["shape"][0] or 1)])
    ),
    "overlapping offsets": lambda w, s: _header_with(w, s, _overlap),
    "offsets out of range": lambda w, s: _header_with(
        w, s, lambda h: _first_tensor(h).update(data_offsets=[2**40, 2**40 + 4])
    ),
    "malformed RNG state": lambda w, s: _state_with(
        w, s, lambda st: st["rng"]["python"]["__tuple__"][1]["__tuple__"].pop()
    ),
    "state.json referencing a missing tensor": lambda w, s: _state_with(
        w, s, lambda st: st["rng"]["torch"].update(__tensor__="nope")
    ),
    "state.json of the wrong types": lambda w, s: _state_with(
        w, s, lambda st: st.update(model=[1, 2])
    ),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_restore_falls_back_past_a_malformed_newest_checkpoint_with_one_line_saying_why(
    world: World, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level(logging.WARNING, logger="spotrun")
    folder = _place(world, 5, MALFORMED[kind](world, 5))
    try:
        assert restore(world.root) == 1
        lines = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
        assert len(lines) == 1 and folder.name in lines[0], lines
        verify = spotrun("verify", str(world.root))
        assert verify.code == 2 and f"{folder.name}: ok" not in verify.out  # verify agrees
    finally:
        _remove(folder)


def test_verify_refuses_a_payload_whose_crc_matches_but_that_restore_cannot_load(
    world: World,
) -> None:
    folder = _place(world, 5, MALFORMED["negative shape"](world, 5))
    try:
        verify = spotrun("verify", str(world.root))
        assert verify.code == 2
        assert f"{folder.name}: " in verify.out and "cannot be decoded" in verify.out
        assert "non-negative" in verify.out
    finally:
        _remove(folder)


def test_a_newer_format_version_still_raises_rather_than_falling_back(world: World) -> None:
    folder = _place(world, 5, _signed_with(world, 5, format_version=2))
    try:
        with pytest.raises(UnknownFormatError, match="format version 2"):
            restore(world.root)
    finally:
        _remove(folder)


@pytest.mark.parametrize("command", ["ls", "verify", "inspect"])
def test_ls_verify_inspect_never_read_a_file_the_manifest_names_outside_the_folder(
    world: World, command: str
) -> None:
    """A manifest naming ../../../canary/secret with the secret's real size and CRC32C: the
    old reader opened it and printed its size and checksum; now the checkpoint is invalid."""
    files = world.source.checkpoint(5)
    manifest = json.loads(files[layout.MANIFEST])
    manifest["files"][0] = hostile.entry("../../../canary/secret", world.canary.secret)
    files[layout.MANIFEST] = json.dumps(manifest).encode()
    folder = _place(world, 5, files)
    try:
        with OpenAudit.watch() as opened:
            ran = spotrun(command, str(world.root), *(["5"] if command == "inspect" else []))
        assert outside(opened, world.canary.dir) == []
        assert ran.code == (2 if command == "verify" else 1 if command == "inspect" else 0)
        assert "not part of the checkpoint format" in ran.out + ran.err
        # the secret's size must not be printed as a number of its own ("19", "19 B", "(19 B)");
        # the same digits inside another number, an age ("19m") or a time ("04:19") are no leak,
        # nor in the temp folder's own name
        printed = re.split(r"[\s(),=]+", ran.out.replace(str(world.root), "<root>"))
        assert str(len(world.canary.secret)) not in printed, ran.out
    finally:
        _remove(folder)


def test_download_from_a_store_writes_only_the_formats_files(world: World, tmp_path: Path) -> None:
    """mirror.download (pull, the sidecar's restore) with a traversal manifest: refused, and
    nothing written anywhere (the S3 variants are in tests/integration/test_fuzz_checkpoints)."""
    files = world.source.checkpoint(5)
    manifest = json.loads(files[layout.MANIFEST])
    manifest["files"][0] = hostile.entry(f"../../../{tmp_path.name}/pwned", files[layout.TENSORS])
    files[layout.MANIFEST] = json.dumps(manifest).encode()
    folder = _place(world, 5, files)
    target = LocalStore(tmp_path / "node")
    try:
        with pytest.raises(ManifestError, match="not part of the checkpoint format"):
            mirror.download(LocalStore(world.root), folder.name, target)  # type: ignore[arg-type]
        assert hostile.tree(tmp_path) <= {"node", "node/checkpoints"}
        assert not (world.base / "pwned").exists()
    finally:
        _remove(folder)


def test_a_symlinked_step_folder_is_no_checkpoint_and_retention_never_deletes_through_it(
    world: World, tmp_path: Path
) -> None:
    """The link points at a valid checkpoint of a newer step outside the root: it is neither
    restored nor listed, and retention (keep=1) leaves the manifest it points at alone."""
    root = tmp_path / "run"
    shutil.copytree(world.root / layout.CHECKPOINTS, root / layout.CHECKPOINTS)
    outside_folder = tmp_path / "elsewhere" / layout.step_dirname(9)
    outside_folder.parent.mkdir()
    for path, blob in world.source.checkpoint(9).items():
        outside_folder.mkdir(exist_ok=True)
        (outside_folder / path).write_bytes(blob)
    link = root / layout.CHECKPOINTS / layout.step_dirname(9)
    link.symlink_to(outside_folder, target_is_directory=True)
    assert layout.step_dirname(9) not in LocalStore(root).names()
    assert restore(root) == 1
    model = Net(4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Checkpointer(root, model=model, optimizer=opt, keep=1, handle_signals=False) as ckpt:
        ckpt.restore()
        train_steps(ckpt, model, opt, 3)
        ckpt.save()
    assert (outside_folder / layout.MANIFEST).exists()
    LocalStore(root).delete(layout.step_dirname(9))
    assert not link.is_symlink() and (outside_folder / layout.MANIFEST).exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fifo", [layout.MANIFEST, layout.TENSORS])
def test_a_fifo_in_a_checkpoint_does_not_hang_ls_or_verify(world: World, fifo: str) -> None:
    folder = _place(world, 5, world.source.checkpoint(5))
    (folder / fifo).unlink()
    os.mkfifo(folder / fifo)
    results: list[Ran] = []
    worker = threading.Thread(
        target=lambda: results.extend(
            [spotrun("ls", str(world.root)), spotrun("verify", str(world.root))]
        ),
        daemon=True,
    )
    try:
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive(), "ls/verify hang on a FIFO"
        ls, verify = results
        assert ls.code == 0 and "not a regular file" in ls.out
        assert verify.code == 2
    finally:
        _remove(folder)


@pytest.mark.parametrize(
    "name",
    [
        "step-" + "\u0660" * 11 + "\u0665",
        "step-000000000005\n",
        "step-00000000005",
        "step-+00000000005",
    ],
)
def test_only_ascii_digits_make_a_step(world: World, name: str) -> None:
    """A valid checkpoint in a folder whose name only looks like a step is not restored."""
    assert layout.parse_step_dirname(name) is None
    folder = world.checkpoints / name
    folder.mkdir()
    for path, blob in world.source.checkpoint(5).items():
        (folder / path).write_bytes(blob)
    try:
        assert restore(world.root) == 1
        assert "not a checkpoint folder" in spotrun("ls", str(world.root)).out
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize("command", ["ls", "verify", "inspect"])
def test_a_missing_folder_is_an_error_naming_it(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "typo"
    ran = spotrun(command, str(missing))
    assert ran.code == 1
    assert str(missing) in ran.err and "no such directory" in ran.err


def test_an_optimizer_state_of_another_setup_raises_naming_the_optimizer(
    world: World, tmp_path: Path
) -> None:
    """Not skipped: like a checkpoint of another model, it is a configuration error."""
    shutil.copytree(world.checkpoints, tmp_path / layout.CHECKPOINTS)
    model = Net(4)
    groups: list[dict[str, Any]] = [
        {"params": list(model.fc.parameters())},
        {"params": list(model.out.parameters())},
    ]
    opt = torch.optim.SGD(groups, lr=0.1)
    ckpt = Checkpointer(tmp_path, model=model, optimizer=opt, handle_signals=False)
    with pytest.raises(CheckpointMismatchError, match="its optimizer state does not load"):
        ckpt.restore()
