"""Replicas in a kopf peering: each takes its own priority so that exactly one is active."""

from __future__ import annotations

import kopf
import pytest

from spotrun_operator.handlers import configure_peering

pytestmark = pytest.mark.unit


def peering(standalone: bool = False) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.peering.standalone = standalone
    return settings


def test_replicas_started_alike_get_distinct_priorities():
    a, b = peering(), peering()
    configure_peering(a.peering, {})
    configure_peering(b.peering, {})
    assert a.peering.priority > 0 and b.peering.priority > 0
    assert a.peering.priority != b.peering.priority  # equal priorities pause every replica
    assert a.peering.lifetime == 60  # kopf's default


def test_priority_and_lifetime_from_the_environment():
    s = peering()
    env = {"SPOTRUN_PEERING_PRIORITY": "7", "SPOTRUN_PEERING_LIFETIME": "15"}
    configure_peering(s.peering, env)
    assert (s.peering.priority, s.peering.lifetime) == (7, 15)


def test_standalone_is_left_alone():
    s = peering(standalone=True)
    configure_peering(s.peering, {"SPOTRUN_PEERING_PRIORITY": "7"})
    assert s.peering.priority == 0
