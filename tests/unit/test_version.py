"""The version, written once (trainer/spotrun/version.py), is what `spotrun --version`, the
package and the operator's first log line show."""

from __future__ import annotations

from typing import Any

import pytest

import spotrun
from spotrun import cli
from spotrun.version import __version__
from spotrun_operator import __main__ as operator_main

pytestmark = pytest.mark.unit


def test_spotrun_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"spotrun {__version__}"
    assert spotrun.__version__ == __version__


def test_the_operator_logs_its_version_and_scope_before_kopf_starts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kopf import cli as kopf_cli

    seen: list[str] = []

    def kopf_main(args: list[str], **_: Any) -> None:
        seen.append(capsys.readouterr().err)  # what was logged before kopf ran
        raise SystemExit(0)

    monkeypatch.setattr(kopf_cli, "main", kopf_main)
    monkeypatch.delenv("SPOTRUN_PROFILE", raising=False)
    monkeypatch.setenv("SPOTRUN_NAMESPACES", "")  # main() writes it back; monkeypatch restores
    monkeypatch.setenv("SPOTRUN_LOG_LEVEL", "INFO")
    assert operator_main.main(["--namespace", "team-a", "--namespace", "team-b"]) == 0
    assert seen == [
        f"spotrun operator {__version__} starting: watching team-a, team-b, standalone\n"]


def test_the_operator_start_line_names_all_namespaces_and_its_peering() -> None:
    assert operator_main.start_line([], "spotrun") == (
        f"spotrun operator {__version__} starting: watching all namespaces, peering 'spotrun'")
