"""Where a rank sits in a gang, from torchrun's env, cross-checked with the pod's SPOTRUN_*."""

from __future__ import annotations

import pytest

from spotrun import gangworld

pytestmark = pytest.mark.unit

TORCHRUN = {
    "RANK": "3",
    "WORLD_SIZE": "4",
    "LOCAL_RANK": "1",
    "LOCAL_WORLD_SIZE": "2",
    "GROUP_RANK": "1",
}


def test_torchruns_env_gives_the_node_and_the_gang() -> None:
    world = gangworld.from_env(TORCHRUN)
    assert world == gangworld.World(
        rank=3, world_size=4, local_rank=1, procs_per_node=2, node_rank=1, nnodes=2
    )
    assert world.is_gang and world.node_of(1) == 0


def test_no_torchrun_is_a_single_rank() -> None:
    assert gangworld.from_env({}) == gangworld.SINGLE
    assert not gangworld.SINGLE.is_gang


def test_the_operators_gang_env_agreeing_is_accepted() -> None:
    env = {
        **TORCHRUN,
        "SPOTRUN_NNODES": "2",
        "SPOTRUN_NODE_RANK": "1",
        "SPOTRUN_NPROC_PER_NODE": "2",
    }
    assert gangworld.from_env(env).node_rank == 1


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SPOTRUN_NNODES", "3", "SPOTRUN_NNODES=3 but torchrun runs this process with 2 nodes"),
        ("SPOTRUN_NODE_RANK", "0", r"pass torchrun --node-rank \$SPOTRUN_NODE_RANK"),
        ("SPOTRUN_NPROC_PER_NODE", "4", "with 2 processes per node"),
    ],
)
def test_a_mismatch_with_the_pod_is_refused_naming_both(name: str, value: str, says: str) -> None:
    with pytest.raises(gangworld.GangEnvError, match=says):
        gangworld.from_env({**TORCHRUN, name: value})


def test_a_single_process_on_a_gang_pod_is_refused() -> None:
    """A script run with python instead of torchrun on a pod of a 2-node gang."""
    with pytest.raises(gangworld.GangEnvError, match="SPOTRUN_NNODES=2 but torchrun runs"):
        gangworld.from_env({"SPOTRUN_NNODES": "2"})


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({**TORCHRUN, "WORLD_SIZE": "5"}, "not a multiple of LOCAL_WORLD_SIZE=2"),
        ({**TORCHRUN, "RANK": "2"}, "is not GROUP_RANK=1 x LOCAL_WORLD_SIZE=2"),
        ({**TORCHRUN, "RANK": "x"}, "RANK='x' is not a whole number"),
        ({**TORCHRUN, "LOCAL_RANK": "2"}, "are not below"),
    ],
)
def test_malformed_torchrun_env_is_refused(env: dict[str, str], says: str) -> None:
    with pytest.raises(gangworld.GangEnvError, match=says):
        gangworld.from_env(env)
