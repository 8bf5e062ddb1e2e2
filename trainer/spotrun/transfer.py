"""``spotrun pull`` / ``spotrun push``: move checkpoints by hand, verified, manifest last."""

from __future__ import annotations

import logging

from . import layout, mirror
from .localstore import LocalStore
from .manifest import ManifestError
from .reader import CorruptCheckpointError, load_verified
from .s3store import S3Store

log = logging.getLogger("spotrun")


def pull(remote: S3Store, local: LocalStore, steps: list[int] | None) -> list[str]:
    names = [n for _, n in layout.newest_first(remote.names())]
    if steps is not None:
        names = [layout.step_dirname(s) for s in steps]
    done = []
    for name in names:
        try:
            mirror.download(remote, name, local)
        except (ManifestError, CorruptCheckpointError, FileNotFoundError) as e:
            log.warning("spotrun: not pulling %s: %s", name, e)
            continue
        done.append(name)
    return done


def push(local: LocalStore, remote: S3Store) -> list[str]:
    done = []
    for _, name in sorted(layout.newest_first(local.names())):
        try:
            load_verified(local, name)
        except (ManifestError, CorruptCheckpointError) as e:
            log.warning("spotrun: not pushing %s: %s", name, e)
            continue
        if mirror.upload(local, name, remote):
            done.append(name)
    return done
