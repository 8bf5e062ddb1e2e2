"""spotrun's log lines: on stderr when the script configures no logging, never twice."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import torch

from spotrun import Checkpointer
from spotrun.logsetup import FallbackHandler, parse_level

pytestmark = pytest.mark.unit


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("spotrun", logging.INFO, __file__, 1, message, None, None)


def test_the_fallback_writes_only_while_the_root_logger_has_no_handler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    handler = FallbackHandler()
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    handler.emit(_record("spotrun: restored step 7"))
    monkeypatch.setattr(root, "handlers", [logging.StreamHandler(io.StringIO())])
    handler.emit(_record("spotrun: saved step 8"))
    assert stream.getvalue() == "spotrun: restored step 7\n"


def test_log_levels_by_name_and_a_bad_one_named(tmp_path: Path) -> None:
    assert parse_level("warning", "log_level") == logging.WARNING
    with pytest.raises(ValueError, match="SPOTRUN_LOG_LEVEL='loud' is not a log level"):
        parse_level("loud", "SPOTRUN_LOG_LEVEL")
    with pytest.raises(ValueError, match="on_interrupt='ignore'"):
        Checkpointer(tmp_path, model=torch.nn.Linear(1, 1), on_interrupt="ignore")  # type: ignore[arg-type]


def test_log_level_quiets_spotrun(tmp_path: Path) -> None:
    logger = logging.getLogger("spotrun")
    before = logger.level
    try:
        Checkpointer(tmp_path, model=torch.nn.Linear(1, 1), handle_signals=False, log_level="error")
        assert not logger.isEnabledFor(logging.WARNING)
    finally:
        logger.setLevel(before)
