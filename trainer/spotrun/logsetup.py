"""spotrun's own log lines reach stderr, even in a script that configures no logging.

The "spotrun" logger gets its level from ``Checkpointer(log_level=...)``, else from
``SPOTRUN_LOG_LEVEL``, else INFO (unless the script set one itself), and one fallback
handler that writes to stderr only while nothing else would: once the script configures
logging (a handler on the root logger, e.g. ``logging.basicConfig``), the lines go there
instead, once each.
"""

from __future__ import annotations

import logging
import os
import sys

ENV = "SPOTRUN_LOG_LEVEL"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class FallbackHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the stderr of the moment, unless the root logger has a handler."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:
            return  # the script's logging shows the line
        self.stream = sys.stderr
        super().emit(record)


def parse_level(value: str | int, source: str) -> int:
    """A logging level from a name (any case) or number; ValueError naming ``source``."""
    if isinstance(value, int):
        return value
    name = value.strip().upper()
    if name in LEVELS:
        return int(getattr(logging, name))
    raise ValueError(
        f"{source}={value!r} is not a log level: use one of {', '.join(LEVELS)} "
        "(WARNING keeps spotrun quiet unless something goes wrong)"
    )


def configure(level: str | int | None) -> None:
    """Set the level (argument, env, or INFO if unset) and add the fallback handler once."""
    logger = logging.getLogger("spotrun")
    env = os.environ.get(ENV)
    if level is not None:
        logger.setLevel(parse_level(level, "log_level"))
    elif env:
        logger.setLevel(parse_level(env, ENV))
    elif logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not any(isinstance(h, FallbackHandler) for h in logger.handlers):
        logger.addHandler(FallbackHandler())
