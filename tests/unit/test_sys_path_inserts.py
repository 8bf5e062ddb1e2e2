"""No test puts a folder holding a ``spotrun`` directory on sys.path: charts/ did, and every
process started afterwards with the session's sys.path (a spawned torch.distributed rank)
imported charts/spotrun as an empty namespace package instead of the library."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
INSERT = re.compile(r"sys\.path\.insert\(\s*0,\s*str\(\s*\w+((?:\s*/\s*\"[^\"]+\")+)\s*\)")


def test_no_test_puts_a_folder_with_a_spotrun_directory_on_sys_path() -> None:
    found = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        if path == Path(__file__).resolve():  # its own example below
            continue
        for match in INSERT.finditer(path.read_text()):
            parts = re.findall(r"\"([^\"]+)\"", match.group(1))
            folder = REPO.joinpath(*parts)
            if (folder / "spotrun").is_dir():
                where = folder.relative_to(REPO)
                found.append(f"{path.relative_to(REPO)} puts {where}/ on sys.path")
    assert found == [], "load the module by path instead (importlib.util.spec_from_file_location)"


def test_the_check_sees_an_insert_of_charts() -> None:
    text = 'sys.path.insert(0, str(REPO / "charts"))'
    match = INSERT.search(text)
    assert match is not None and re.findall(r"\"([^\"]+)\"", match.group(1)) == ["charts"]
    assert (REPO / "charts" / "spotrun").is_dir()
