"""The checkpoint layout shared by the trainer, the sidecar and the operator.

``<root>/checkpoints/step-000000001200/`` holds one checkpoint; ``MANIFEST.json`` inside it
is the commit marker. The same names are used on local disk and in S3 (as key prefixes).
Pure functions only: no I/O here.
"""

from __future__ import annotations

import re

CHECKPOINTS = "checkpoints"
MANIFEST = "MANIFEST.json"
TENSORS = "tensors.safetensors"
STRUCTURE = "state.json"
FORMAT_VERSION = 1
TMP_PREFIX = ".tmp-"
# The files of a checkpoint are named by the format, never by its manifest: a manifest that
# names anything else (a path, "..", an absolute path, a duplicate) makes the checkpoint invalid.
PAYLOAD = (TENSORS, STRUCTURE)
MANIFEST_LIMIT = 1024 * 1024  # bytes; a manifest is a few KiB, a larger one is refused unread

_STEP_DIR = re.compile(r"step-([0-9]{12})")  # [0-9], not \d: \d matches Unicode digits too


def step_dirname(step: int) -> str:
    """``step-000000001200`` for step 1200."""
    if step < 0:
        raise ValueError(f"a checkpoint step must be >= 0, got {step}")
    return f"step-{step:012d}"


def parse_step_dirname(name: str) -> int | None:
    """The step a checkpoint folder name stands for, or None for anything else."""
    match = _STEP_DIR.fullmatch(name)
    return int(match.group(1)) if match else None


def payload_problem(paths: list[str], world_size: int = 1) -> str | None:
    """Why a manifest's file list is not the format's (pure); None when it is exactly
    ``PAYLOAD`` (each name once) and, for a gang of ``world_size`` > 1 ranks, also exactly
    ``rank-NNNNN/<PAYLOAD>`` for every rank below ``world_size``."""
    expected = expected_paths(world_size)
    for path in paths:
        if path not in expected:
            return (
                f"it names the file {path!r}, which is not part of the checkpoint format (only "
                f"{', '.join(PAYLOAD)}, and rank-NNNNN/ of each of them for each rank below "
                f"the world size {world_size}); such a checkpoint is never read nor written"
            )
    for name in expected:
        if paths.count(name) != 1:
            return f"it lists {name} {paths.count(name)} times instead of once"
    return None


# -- gangs (multi-node attempts, issue 14) ---------------------------------------------------
# A gang checkpoint is one step folder holding the top-level PAYLOAD (global rank 0's: the
# replicated state, or the global part of a sharded one) and ``rank-NNNNN/<PAYLOAD>`` for every
# global rank (its RNG streams, its shard). Each node (pod) writes its ranks' files into its own
# checkpoint volume, then ``PART-node-NNNNN.json`` last (the node's commit marker, naming the
# files it wrote). Global rank 0 writes MANIFEST.json (naming every rank's files) after every
# rank has written. PART files are never listed in a manifest; readers ignore them. In S3, a
# node's sidecar uploads its files, then its PART; node 0's sidecar uploads MANIFEST.json only
# once every node's PART is there, so a checkpoint missing a rank's part is never committed.
MAX_WORLD = 100_000  # rank and node numbers have 5 digits
_RANK_DIR = re.compile(r"rank-([0-9]{5})")
_PART = re.compile(r"PART-node-([0-9]{5})\.json")


def rank_dirname(rank: int) -> str:
    """``rank-00003``: the folder of global rank 3's files inside a gang checkpoint."""
    if not 0 <= rank < MAX_WORLD:
        raise ValueError(f"a rank must be in [0, {MAX_WORLD}), got {rank}")
    return f"rank-{rank:05d}"


def parse_rank_dirname(name: str) -> int | None:
    match = _RANK_DIR.fullmatch(name)
    return int(match.group(1)) if match else None


def part_name(node_rank: int) -> str:
    """``PART-node-00001.json``: node 1's commit marker inside a gang checkpoint folder."""
    if not 0 <= node_rank < MAX_WORLD:
        raise ValueError(f"a node rank must be in [0, {MAX_WORLD}), got {node_rank}")
    return f"PART-node-{node_rank:05d}.json"


def parse_part_name(name: str) -> int | None:
    """The node rank a PART file name stands for, or None for anything else."""
    match = _PART.fullmatch(name)
    return int(match.group(1)) if match else None


def expected_paths(world_size: int) -> list[str]:
    """Every file a checkpoint of ``world_size`` ranks holds (1: today's single-rank layout)."""
    if not 1 <= world_size <= MAX_WORLD:
        raise ValueError(f"a world size must be in [1, {MAX_WORLD}], got {world_size}")
    ranks = [] if world_size == 1 else range(world_size)
    return [*PAYLOAD, *(f"{rank_dirname(r)}/{name}" for r in ranks for name in PAYLOAD)]


def node_of_rank(rank: int, procs_per_node: int) -> int:
    """The node (pod) rank that holds global rank ``rank`` (torchrun's contiguous blocks)."""
    return rank // procs_per_node


def tmp_dirname(step: int, token: str) -> str:
    """A folder a writer fills before renaming it into place; never read as a checkpoint."""
    return f"{TMP_PREFIX}{step_dirname(step)}-{token}"


def newest_first(names: list[str]) -> list[tuple[int, str]]:
    """Checkpoint folder names (others ignored) as (step, name), newest first."""
    found = [(step, n) for n in names if (step := parse_step_dirname(n)) is not None]
    return sorted(found, reverse=True)
