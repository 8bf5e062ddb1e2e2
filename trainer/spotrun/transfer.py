"""``spotrun pull`` / ``spotrun push``: move checkpoints by hand, verified (``check``: see
``checking``), manifest last."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import layout, mirror
from .integrity import CorruptCheckpointError
from .localstore import LocalStore
from .manifest import ManifestError

if TYPE_CHECKING:
    from .s3store import S3Store

log = logging.getLogger("spotrun")


def pull(
    remote: S3Store, local: LocalStore, steps: list[int] | None, check: mirror.Check
) -> list[str]:
    names = [n for _, n in layout.newest_first(remote.names())]
    if steps is not None:
        names = [layout.step_dirname(s) for s in steps]
    done = []
    for name in names:
        try:
            mirror.download(remote, name, local, check)
        except (ManifestError, CorruptCheckpointError, FileNotFoundError) as e:
            log.warning("spotrun: not pulling %s: %s", name, e)
            continue
        done.append(name)
    return done


def push(local: LocalStore, remote: S3Store, check: mirror.Check) -> list[str]:
    done = []
    for _, name in sorted(layout.newest_first(local.names())):
        try:
            check(local, name)
        except (ManifestError, CorruptCheckpointError) as e:
            log.warning("spotrun: not pushing %s: %s", name, e)
            continue
        if mirror.upload(local, name, remote):
            done.append(name)
    return done
