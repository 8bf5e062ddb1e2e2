"""The optional parts of spotrun (the extras in pyproject.toml) and the error naming the one a
command or the library lacks: ``pip install 'spotrun[s3]'`` rather than a bare traceback."""

from __future__ import annotations

# the top-level modules each extra installs (pyproject.toml's optional-dependencies)
EXTRA_OF: dict[str, str] = {
    "torch": "torch",
    "numpy": "torch",
    "safetensors": "torch",
    "boto3": "s3",
    "botocore": "s3",
    "s3transfer": "s3",
    "kopf": "operator",
    "kubernetes": "operator",
    "yaml": "operator",
    "prometheus_client": "operator",
}


class MissingExtraError(ModuleNotFoundError):
    """A module of an extra that is not installed; the message names the extra to install."""


def extra_of(error: ModuleNotFoundError) -> str | None:
    """The extra whose module ``error`` could not find (None: not one of an extra's)."""
    top = (error.name or "").partition(".")[0]
    return EXTRA_OF.get(top)


def missing(error: ModuleNotFoundError, needed_for: str) -> ModuleNotFoundError:
    """``error`` as a MissingExtraError saying ``needed_for`` needs it and how to install it;
    ``error`` itself when the module is not one of an extra's (a real bug, kept as it is)."""
    extra = extra_of(error)
    if extra is None or isinstance(error, MissingExtraError):
        return error
    return MissingExtraError(
        f"{needed_for} needs {error.name}, which is not installed: install it with "
        f"`pip install 'spotrun[{extra}]'`",
        name=error.name,
    )
