"""The pod contract's on/off variables read the usual spellings, and refuse the rest by name:
``SPOTRUN_SAVE_AT_ONCE=true`` once read as "off", the opposite of what it says."""

from __future__ import annotations

import pytest

from spotrun.podenv import PodEnv, PodEnvError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("raw", "value"), [
    ("1", True), ("true", True), ("Yes", True), ("ON", True),
    ("0", False), ("false", False), ("no", False), ("Off", False),
])
def test_a_flag_reads_what_it_says(raw: str, value: bool) -> None:
    assert PodEnv.from_env({"SPOTRUN_SAVE_AT_ONCE": raw}).save_at_once is value


def test_a_flag_that_is_neither_is_refused_naming_the_variable() -> None:
    with pytest.raises(PodEnvError) as err:
        PodEnv.from_env({"SPOTRUN_SAVE_AT_ONCE": "maybe"})
    assert "SPOTRUN_SAVE_AT_ONCE='maybe'" in str(err.value) and "1 or 0" in str(err.value)


@pytest.mark.parametrize("value", [True, False])
def test_a_flag_set_off_stays_off_through_the_environment(value: bool) -> None:
    # Rendered as "" (unset), an explicit off came back as the default: save at once.
    written = PodEnv(save_at_once=value, start_without_storage=value).to_env()
    read = PodEnv.from_env(written)
    assert (read.save_at_once, read.start_without_storage) == (value, value)
