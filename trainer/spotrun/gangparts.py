"""Pure decisions of a gang pod's sidecar (issue 14): which PART markers to trust, when node 0
may commit a checkpoint, and which leftovers to delete. No I/O here (``gangsync`` does it).

A gang checkpoint is committed in S3 when node 0 puts its MANIFEST.json there, and node 0 does
so only when, for every node of the gang, S3 holds that node's PART and every file the manifest
names is listed with the size and CRC32C both the manifest and the PART that names it give.
Everything read from a PART or a manifest is hostile until checked here: a PART of another
step, of a node out of range, of a gang of another size, or naming a file that is not its
node's ranks' in the format is refused (never followed, never uploaded, never committed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from . import layout
from .manifest import FileEntry, Manifest, Part
from .podenv import PodEnv


class PartError(ValueError):
    """A PART-node-NNNNN.json that cannot be used; the message names it and why."""


@dataclass(frozen=True)
class Role:
    """This pod's place in its gang (from SPOTRUN_NNODES/NODE_RANK/NPROC_PER_NODE)."""

    node: int
    nnodes: int
    procs_per_node: int | None  # None: not set (then a PART's own rank folders are checked)

    @classmethod
    def from_env(cls, env: PodEnv) -> Role | None:
        """None for a single-pod job (SPOTRUN_NNODES unset or 1): today's sidecar."""
        if (env.nnodes or 1) == 1:
            return None
        return cls(env.node_rank or 0, env.nnodes or 1, env.procs_per_node)


def node_paths(node: int, procs_per_node: int) -> list[str]:
    """The files node ``node`` writes: its ranks' folders, and the top level on node 0."""
    top = list(layout.PAYLOAD) if node == 0 else []
    ranks = range(node * procs_per_node, (node + 1) * procs_per_node)
    return [*top, *(f"{layout.rank_dirname(r)}/{n}" for r in ranks for n in layout.PAYLOAD)]


def rank_of(path: str) -> int | None:
    """The rank whose folder holds ``path`` (``rank-NNNNN/<payload>``), else None."""
    folder, _, rest = path.partition("/")
    return layout.parse_rank_dirname(folder) if rest in layout.PAYLOAD else None


def _own_paths(paths: list[str], node: int) -> list[str] | None:
    """The files a PART of ``node`` must name when the ranks per node are unknown: the rank
    folders it names (contiguous, at least one), each complete; None when it names others."""
    ranks = sorted({r for p in paths if (r := rank_of(p)) is not None})
    if not ranks or ranks != list(range(ranks[0], ranks[-1] + 1)):
        return None
    top = list(layout.PAYLOAD) if node == 0 else []
    return [*top, *(f"{layout.rank_dirname(r)}/{n}" for r in ranks for n in layout.PAYLOAD)]


def part_problem(
    part: Part, step: int, node: int, nnodes: int, procs_per_node: int | None
) -> str | None:
    """Why ``part``, found as node ``node``'s PART in step ``step``'s folder of a gang of
    ``nnodes``, is unusable (None: it is node ``node``'s ranks' files, each once)."""
    if part.step != step:
        return f"it is step {part.step}'s, found in step {step}'s folder"
    if part.node_rank != node:
        return f"it says node {part.node_rank}, its file name says node {node}"
    if part.nnodes != nnodes:
        return f"it names a gang of {part.nnodes} node(s), this gang has {nnodes}"
    if not 0 <= node < nnodes:
        return f"node {node} is out of range for a gang of {nnodes}"
    paths = [f.path for f in part.files]
    if procs_per_node is not None:
        expected: list[str] | None = node_paths(node, procs_per_node)
    else:
        expected = _own_paths(paths, node)
    if expected is None or sorted(paths) != sorted(expected):
        per = f"{procs_per_node} rank(s) per node" if procs_per_node else "its ranks"
        return (
            f"it names {sorted(paths)[:6]}, not exactly the files of node {node} ({per}: "
            f"{', '.join(layout.PAYLOAD)} of each rank's rank-NNNNN/ folder"
            f"{', and the top-level ones on node 0' if node == 0 else ''})"
        )
    return None


def parse_part(blob: bytes | bytearray, where: str) -> Part:
    """A PART from untrusted bytes (strict types; PartError names ``where`` and the cause)."""
    try:
        return Part.model_validate_json(bytes(blob), strict=True)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise PartError(f"{where}: not a valid PART: {loc}: {first['msg']}") from None
    except ValueError as e:
        raise PartError(f"{where}: not a valid PART: {e}") from None


def manifest_problem(manifest: Manifest, role: Role) -> str | None:
    """Why node 0 of gang ``role`` must never commit ``manifest`` (None: it may, once every
    part is there)."""
    world = manifest.world
    if world is None:
        return "it names no world (a single-rank checkpoint) but this pod is node 0 of a gang"
    if world.nnodes != role.nnodes:
        return f"it names a gang of {world.nnodes} node(s), this gang has {role.nnodes}"
    if role.procs_per_node is not None and world.procs_per_node != role.procs_per_node:
        return (
            f"it names {world.procs_per_node} rank(s) per node, SPOTRUN_NPROC_PER_NODE says "
            f"{role.procs_per_node}"
        )
    return None


def commit_wait(
    manifest: Manifest, parts: Mapping[int, Part], listed: Mapping[str, int]
) -> str | None:
    """What node 0 still waits for before it may commit ``manifest`` (None: commit now).

    ``parts``: the PARTs S3 holds in the checkpoint's folder, by the node their name says;
    ``listed``: every object there, path -> size. A PART that does not match (another
    attempt's, left at the same step, may still be overwritten) is waited on, never trusted.
    """
    world = manifest.world
    assert world is not None  # manifest_problem first
    missing = [n for n in range(world.nnodes) if n not in parts]
    if missing:
        return f"the part(s) of node(s) {_few(missing)} of {world.nnodes} are not in S3"
    named: dict[str, tuple[int, FileEntry]] = {}
    for node in range(world.nnodes):
        part = parts[node]
        problem = part_problem(part, manifest.step, node, world.nnodes, world.procs_per_node)
        if problem is not None:
            return f"node {node}'s PART in S3 is not usable: {problem}"
        named.update((f.path, (node, f)) for f in part.files)
    for entry in manifest.files:
        node, said = named[entry.path]  # the parts tile expected_paths, as the manifest does
        if (said.size, said.crc32c) != (entry.size, entry.crc32c):
            return (
                f"node {node}'s PART says {entry.path} is {said.size} bytes, CRC32C "
                f"{said.crc32c}; the manifest says {entry.size} bytes, CRC32C {entry.crc32c}"
            )
        size = listed.get(entry.path)
        if size != entry.size:
            found = "missing" if size is None else f"{size} bytes"
            return f"{entry.path} in S3 is {found}, the manifest says {entry.size} bytes"
    return None


def _few(items: list[int]) -> str:
    more = f" and {len(items) - 8} more" if len(items) > 8 else ""
    return ", ".join(map(str, items[:8])) + more


@dataclass(frozen=True)
class Folder:
    """What a local checkpoint folder holds, for node k's sidecar."""

    step: int
    part: bool  # this node's PART (its local commit marker)
    manifest: bool  # MANIFEST.json (committed locally by rank 0, or restored)


def committed_for_node(folders: list[Folder]) -> list[int]:
    """The local checkpoints node k's sidecar uploads a part of: those holding its PART,
    newest first. A folder with a MANIFEST but no PART was restored (it is in S3 already)."""
    return sorted((f.step for f in folders if f.part), reverse=True)


def local_leftovers(folders: list[Folder], keep: int) -> list[int]:
    """Local folders without a MANIFEST (the library prunes those) older than the newest
    ``keep`` that hold this node's PART or a MANIFEST: parts uploaded or superseded, and
    saves that never finished. A newer folder without either may be in the writing."""
    marked = sorted((f.step for f in folders if f.part or f.manifest), reverse=True)
    if len(marked) < keep:
        return []
    oldest_kept = marked[keep - 1]
    return sorted(f.step for f in folders if not f.manifest and f.step < oldest_kept)


def remote_leftovers(committed: list[int], uncommitted: list[int], keep: int) -> list[int]:
    """Never-committed step folders in S3 (parts, rank files) that node 0 deletes: those
    older than the ``keep``-th newest committed checkpoint. Retention would delete a
    checkpoint that old anyway, so no gang can still be on its way to committing it."""
    newest = sorted(committed, reverse=True)
    if len(newest) < keep:
        return []
    return sorted(s for s in uncommitted if s < newest[keep - 1])
