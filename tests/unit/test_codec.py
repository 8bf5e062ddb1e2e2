import math

import numpy as np
import pytest
import torch

from spotrun import codec

pytestmark = pytest.mark.unit


def test_nested_state_round_trips_with_int_keys_tuples_and_special_floats() -> None:
    state = {
        "optimizer": {
            "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2, 2)}},
            "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0]}],
        },
        "values": [None, True, 7, "x", float("inf"), b"\x00\xff"],
        "arr": np.arange(5, dtype=np.uint32),
    }
    structure, tensors = codec.encode(state)
    out = codec.decode(structure, tensors)
    assert out["optimizer"]["state"][0]["exp_avg"].equal(torch.ones(2, 2))
    assert out["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert out["values"][:4] == [None, True, 7, "x"] and math.isinf(out["values"][4])
    assert out["values"][5] == b"\x00\xff"
    assert out["arr"].dtype == np.uint32 and out["arr"].tolist() == [0, 1, 2, 3, 4]


def test_unsupported_value_names_its_path_and_the_fix() -> None:
    with pytest.raises(codec.UnsupportedStateError, match=r"extras/handle.*state_dict"):
        codec.encode({"extras": {"handle": object()}})


def test_a_numpy_array_whose_tensor_changed_dtype_is_refused_not_reinterpreted() -> None:
    # numpy's RNG key (uint32) travels as int64; a same-size float64 in its place would be cast
    # into a garbage RNG state, and out-of-range int64 values would wrap around silently
    key = np.arange(624, dtype=np.uint32)
    structure, tensors = codec.encode({"key": key})
    ref = structure["key"]["__ndarray__"]
    as_float = {ref: tensors[ref].to(torch.float64)}
    with pytest.raises(codec.StateDecodeError, match=r"a numpy uint32 array is saved as int64"):
        codec.decode(structure, as_float)
    too_big = {ref: torch.full((624,), 2**40, dtype=torch.int64)}
    with pytest.raises(codec.StateDecodeError, match="out of range for numpy uint32"):
        codec.decode(structure, too_big)
    assert codec.decode(structure, tensors)["key"].tolist() == key.tolist()
