import random

import numpy as np
import pytest
import torch

from spotrun import codec, rng

pytestmark = pytest.mark.unit


def _draws() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


@pytest.mark.parametrize("through_codec", [False, True])
def test_every_generator_replays_after_restore(through_codec: bool) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    _draws()
    state = rng.capture()
    if through_codec:
        structure, tensors = codec.encode(state)
        state = codec.decode(structure, {k: v.clone() for k, v in tensors.items()})
    expected = _draws()
    _draws()  # move every generator on
    rng.restore(state)
    assert _draws() == expected


def test_cuda_states_without_cuda_warn_instead_of_failing(caplog) -> None:
    state = rng.capture()
    state["cuda"] = [torch.zeros(16, dtype=torch.uint8)]
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the GPU device check covers this case")
    rng.restore(state)
    assert "CUDA random streams restart" in caplog.text
