"""The ``spotrun`` command: ls, verify, inspect and chaos (each a thin shell over a module)."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .extras import extra_of, missing
from .store import StoreError
from .version import __version__

if TYPE_CHECKING:
    from .mirror import Check
    from .s3store import S3Store
    from .store import Store

# Subcommands import what they need when they run: `spotrun exec` must install its signal
# handlers within milliseconds, not after importing torch (seconds).


def _open(uri: str) -> Store:
    """The store at ``uri``; a local root that does not exist is an error, not an empty list."""
    from .localstore import LocalStore
    from .store import open_store

    store = open_store(uri)
    if isinstance(store, LocalStore):
        store.check_root()
    return store


def _checked() -> Check:
    """The payload check (``checking``); a note on stderr when torch is absent."""
    from .checking import strongest

    check, note = strongest()
    if note:
        print(f"spotrun: {note}", file=sys.stderr)
    return check


def _ls(args: argparse.Namespace) -> int:
    from . import catalog

    rows = catalog.scan(_open(args.uri), None if args.fast else _checked())
    for line in catalog.format_rows(rows):
        print(line)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from . import catalog

    rows = [r for r in catalog.scan(_open(args.uri), _checked()) if r.step is not None]
    for r in rows:
        print(f"{r.name}: {'ok' if r.valid else r.problem}")
    if not any(r.valid for r in rows):
        print(f"no valid checkpoint in {args.uri}", file=sys.stderr)
        return 1
    return 0 if all(r.valid for r in rows) else 2


def _inspect(args: argparse.Namespace) -> int:
    from . import catalog, layout

    store, check = _open(args.uri), _checked()
    if args.step is None:
        newest = next((r for r in catalog.scan(store, check) if r.valid), None)
        if newest is None:
            print(f"no valid checkpoint in {args.uri}", file=sys.stderr)
            return 1
        name = newest.name
    else:
        name = layout.step_dirname(args.step)
    for line in catalog.describe(store, name, check):
        print(line)
    return 0


def _command_after_dashes(argv: list[str]) -> list[str]:
    """argparse.REMAINDER keeps a leading ``--``: the command is what follows it."""
    return argv[1:] if argv[:1] == ["--"] else argv


def _chaos(args: argparse.Namespace) -> int:
    from . import chaos

    command = _command_after_dashes(args.command)
    if not command:
        print("spotrun chaos: give the training command after --", file=sys.stderr)
        return 2
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="spotrun-chaos-"))
    try:
        report = chaos.run(
            command, args.kills, args.sigkill, args.seed, workdir, args.timeout, args.fresh_dir
        )
    except chaos.ChaosRefused as e:
        print(f"spotrun chaos: refused: {e}", file=sys.stderr)
        return 2
    for line in chaos.format_report(report):
        print(line)
    return report.exit_code


def _pull(args: argparse.Namespace) -> int:
    from . import transfer
    from .localstore import LocalStore

    remote, local = _s3(args.uri), LocalStore(args.dir)
    steps = [args.step] if args.step is not None else None
    done = transfer.pull(remote, local, steps, _checked())
    print(f"pulled {len(done)} checkpoint(s) into {local.dir}: {', '.join(done) or 'none'}")
    return 0 if done else 1


def _push(args: argparse.Namespace) -> int:
    from . import transfer
    from .localstore import LocalStore

    local, remote = LocalStore(args.dir), _s3(args.uri)
    local.check_root()
    done = transfer.push(local, remote, _checked())
    print(f"pushed {len(done)} checkpoint(s) to {remote.uri}: {', '.join(done) or 'none'}")
    return 0


def _s3(uri: str) -> S3Store:
    from .s3store import S3Store

    if not uri.startswith("s3://"):
        raise StoreError(f"{uri!r}: expected an s3://bucket/prefix URI")
    return S3Store.from_uri(uri)


def _sidecar(args: argparse.Namespace) -> int:
    from . import sidecar
    from .env import Settings

    return sidecar.run(Settings.from_env(), sidecar.SidecarConfig.from_env())


def _purge(args: argparse.Namespace) -> int:
    from . import purge

    count = purge.purge(args.uri)
    print(f"deleted {count} object(s) under {args.uri}")
    return 0


def _exec(args: argparse.Namespace) -> int:
    from . import execwrap

    command = _command_after_dashes(args.command)
    if not command:
        print("spotrun exec: give the command after --", file=sys.stderr)
        return 2
    return execwrap.run(command)


@functools.cache  # built once per process (tests call main() many times in-process)
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spotrun", description="resumable training on spot capacity")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--version", action="version", version=f"spotrun {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    ls = sub.add_parser("ls", help="list checkpoints with step, size, age and validity")
    ls.add_argument("uri", help="checkpoint root (a directory, or s3://bucket/prefix)")
    ls.add_argument("--fast", action="store_true", help="read manifests only, skip checksums")
    ls.set_defaults(func=_ls)

    verify = sub.add_parser("verify", help="check every checkpoint against its manifest")
    verify.add_argument("uri")
    verify.set_defaults(func=_verify)

    inspect = sub.add_parser("inspect", help="show a checkpoint's metadata and tensors")
    inspect.add_argument("uri")
    inspect.add_argument("step", nargs="?", type=int, help="default: the newest valid")
    inspect.set_defaults(func=_inspect)

    pull = sub.add_parser("pull", help="download (and verify) checkpoints from S3")
    pull.add_argument("uri", help="s3://bucket/prefix")
    pull.add_argument("dir", help="local checkpoint root")
    pull.add_argument("--step", type=int, help="one step (default: every valid checkpoint)")
    pull.set_defaults(func=_pull)

    push = sub.add_parser("push", help="upload local checkpoints to S3 (manifest last)")
    push.add_argument("dir")
    push.add_argument("uri")
    push.set_defaults(func=_push)

    pg = sub.add_parser("purge", help="delete every object under a job's storage prefix")
    pg.add_argument("uri", help="s3://bucket/prefix (never a whole bucket) or a directory")
    pg.set_defaults(func=_purge)

    side = sub.add_parser("sidecar", help="restore from and sync to S3 (the pod's sidecar)")
    side.set_defaults(func=_sidecar)

    ex = sub.add_parser("exec", help="run a command, forwarding SIGTERM/SIGINT (entrypoint)")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    ex.set_defaults(func=_exec)

    ch = sub.add_parser(
        "chaos", help="interrupt a training command, then compare whole checkpoints"
    )
    ch.add_argument("--kills", type=int, default=3, help="SIGTERM interruptions")
    ch.add_argument("--sigkill", type=int, default=0, help="SIGKILL interruptions")
    ch.add_argument("--seed", type=int, default=0)
    ch.add_argument("--workdir", help="where both runs keep checkpoints and logs")
    ch.add_argument(
        "--timeout", type=float, default=900.0, help="seconds each run (and attempt) may take"
    )
    ch.add_argument(
        "--fresh-dir",
        action="store_true",
        help="an empty local directory on every restart (a new node): resume from S3 only",
    )
    ch.add_argument("command", nargs=argparse.REMAINDER)
    ch.set_defaults(func=_chaos)
    return p


CLOSED_PIPE = 128 + signal.SIGPIPE  # 141: what a shell reports for `yes | head -1`


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. A reader that closes the pipe early (``spotrun ls … | head -1``)
    ends the command quietly with exit 141, as a SIGPIPE would, not with a traceback."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not at exit where it cannot be caught
        return code
    except BrokenPipeError:
        _silence_stdout()
        return CLOSED_PIPE
    except (StoreError, FileNotFoundError, ValueError) as e:
        print(f"spotrun {args.cmd}: {e}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:  # an extra not installed (e.g. torch for chaos): say which
        if extra_of(e) is None:
            raise
        print(f"spotrun {args.cmd}: {missing(e, 'this command')}", file=sys.stderr)
        return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's flush at exit finds no closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
