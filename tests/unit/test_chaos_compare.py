"""The whole-checkpoint comparison of ``spotrun chaos``: every value, named, with a hint."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
import torch

from spotrun import codec, rng
from spotrun.chaos_compare import Difference, compare, explain, format_findings, topic_of

pytestmark = pytest.mark.unit


def _round_trip(state: dict[str, Any]) -> Any:
    """A state as a checkpoint gives it back (the reader decodes exactly this)."""
    structure, tensors = codec.encode(state)
    return codec.decode(structure, {k: v.clone() for k, v in tensors.items()}, torch.device("cpu"))


def _training_state(lr: float = 0.1, steps: int = 2) -> dict[str, Any]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(steps):
        model(torch.ones(1, 3)).sum().backward()
        opt.step()
        sched.step()
    return _round_trip(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "loader": {"epoch": 1, "batches_taken": 4, "seed": 0},
            "extras": {"best": 0.5, "history": [1, 2, 3]},
            "progress": {"step": steps, "epoch": 1},
        }
    )


def test_two_runs_of_the_same_training_compare_equal_in_every_value() -> None:
    assert compare(_training_state(), _training_state()) == []


def test_an_unseeded_numpy_draw_is_named_with_the_numpy_hint() -> None:
    np.random.seed(1)
    before = _round_trip({"rng": rng.capture()})
    np.random.rand()
    after = _round_trip({"rng": rng.capture()})

    differences = compare(before, after)

    assert "rng.numpy.state.key" in {d.path for d in differences}
    assert all(d.path.startswith("rng.numpy.state.") for d in differences)
    (finding,) = explain(differences)
    assert finding.topic == "rng.numpy"
    assert "numpy's RNG differs" in finding.hint and "without seeding" in finding.hint


def test_pythons_rng_is_one_difference_counting_its_differing_words() -> None:
    random.seed(1)
    before = _round_trip({"rng": rng.capture()})
    random.seed(2)
    after = _round_trip({"rng": rng.capture()})

    (difference,) = compare(before, after)

    assert difference.path == "rng.python[1]"
    assert difference.detail.startswith(("623 of 625", "624 of 625", "625 of 625"))
    assert "Python's RNG" in explain([difference])[0].hint


def test_the_scheduler_and_the_learning_rate_are_compared_by_path() -> None:
    differences = {d.path: d.detail for d in compare(_training_state(), _training_state(steps=3))}

    assert differences["scheduler.last_epoch"] == "2 vs 3"
    assert differences["scheduler._step_count"] == "3 vs 4"
    assert differences["optimizer.param_groups[0].lr"] == "0.025 vs 0.0125"
    assert differences["optimizer.state[0].step"].startswith("max abs diff 1 ")
    assert differences["progress.step"] == "2 vs 3"
    assert differences["model.weight"].startswith("max abs diff ")


def test_a_key_in_one_run_only_is_named_with_the_run_that_has_it() -> None:
    reference = {"extras": {"best": 1.0}, "state": {"hidden": torch.zeros(2)}}
    interrupted = {"extras": {"best": 1.0, "seen": 3}}

    differences = compare(reference, interrupted)

    assert differences == [
        Difference("extras.seen", "only in the interrupted run"),
        Difference("state", "only in the reference run"),
    ]


def test_a_tensor_difference_says_how_large_and_how_many() -> None:
    changed = torch.ones(2, 2)
    changed[0, 1] += 1e-3

    (difference,) = compare({"model": {"weight": torch.ones(2, 2)}}, {"model": {"weight": changed}})

    assert difference.path == "model.weight"
    assert difference.detail == "max abs diff 0.001 (1 of 4 values differ)"


def test_integer_tensors_say_how_many_values_differ_and_the_first() -> None:
    (difference,) = compare({"k": torch.tensor([1, 2, 3])}, {"k": torch.tensor([1, 5, 7])})
    assert difference.detail == "2 of 3 values differ (first at [1]: 2 vs 5)"


def test_tensors_compare_bit_for_bit_dtype_and_shape_included() -> None:
    nan = torch.tensor([float("nan"), 1.0])
    assert compare({"t": nan}, {"t": nan.clone()}) == []
    (zero,) = compare({"t": torch.tensor([0.0])}, {"t": torch.tensor([-0.0])})
    assert "other bits" in zero.detail
    (dtype,) = compare({"t": torch.zeros(2)}, {"t": torch.zeros(2, dtype=torch.float64)})
    assert dtype.detail == "dtype torch.float32 vs torch.float64"
    (shape,) = compare({"t": torch.zeros(2)}, {"t": torch.zeros(3)})
    assert shape.detail == "shape [2] vs [3]"


def test_plain_values_differ_by_type_too() -> None:
    (difference,) = compare({"extras": {"lr": 1}}, {"extras": {"lr": 1.0}})
    assert difference.detail == "1 (int) vs 1.0 (float)"
    assert compare({"x": (1, "a", None)}, {"x": (1, "a", None)}) == []
    (kind,) = compare({"x": (1, 2)}, {"x": [1, 2]})
    assert kind.detail == "tuple vs list"


def test_a_key_no_hint_names_is_compared_and_reported_with_the_general_hint() -> None:
    (difference,) = compare({"future_part": {"a": [1, 2]}}, {"future_part": {"a": [1, 3]}})
    assert difference == Difference("future_part.a", "[1]: 2 vs 3")
    (finding,) = explain([difference])
    assert finding.topic == "future_part" and "outside the checkpoint" in finding.hint


def test_causes_are_listed_before_the_weights_that_follow_from_them() -> None:
    differences = [
        Difference("model.weight", "max abs diff 0.1 (1 of 4 values differ)"),
        Difference("optimizer.state[0].exp_avg", "max abs diff 0.1 (1 of 4 values differ)"),
        Difference("extras.calls", "300 vs 120"),
        Difference("loader.batches_taken", "4 vs 5"),
        Difference("rng.torch", "max abs diff 3 (9 of 5056 values differ)"),
    ]

    topics = [f.topic for f in explain(differences)]

    assert topics == ["rng.torch", "loader", "extras", "optimizer", "model"]
    lines = format_findings(explain(differences))
    assert lines[0] == "  rng.torch: max abs diff 3 (9 of 5056 values differ)"
    assert lines[1].startswith("    hint: torch's CPU RNG differs")


def test_many_differences_under_one_topic_are_cut_short_with_a_count() -> None:
    differences = [Difference(f"model.layer{i}", "max abs diff 1") for i in range(10)]
    lines = format_findings(explain(differences), per_topic=3)
    assert lines[3] == "  ... and 7 more under model"
    assert len(lines) == 5


def test_topics_match_whole_path_segments() -> None:
    assert topic_of("rng.numpy.state.key") == "rng.numpy"
    assert topic_of("optimizer.param_groups[0].lr") == "optimizer.param_groups"
    assert topic_of("optimizer.state[0].exp_avg") == "optimizer"
    assert topic_of("statefulness.x") == "statefulness"
    assert topic_of("state.hidden") == "state"
