"""docs/fields.md covers every field of docs/reference.md (generated from the CRD), and every
test it names exists: a new field without a row, or a renamed test, fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
FIELD = re.compile(r"^\| `((?:spec|status)\.[^`]+)` \|", re.M)
TEST = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")
IN_PROGRESS = "(in progress: other engineer"


def reference_fields() -> list[str]:
    return FIELD.findall((ROOT / "docs" / "reference.md").read_text())


def table_rows(text: str) -> dict[str, str]:
    """field -> its whole row, from a fields.md text."""
    return {m.group(1): line for line in text.splitlines() if (m := FIELD.match(line))}


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def problems(rows: dict[str, str], fields: list[str]) -> list[str]:
    """What is wrong with the table: fields without a row, rows without a test, named tests
    that do not exist (allowed only in a row marked in progress)."""
    out = [f"{f}: no row in docs/fields.md" for f in fields if f not in rows]
    for field, row in rows.items():
        named = TEST.findall(row)
        if not named:
            out.append(f"{field}: the row names no test")
        for file, name in named:
            path = ROOT / file
            if (not path.exists() or name not in functions_in(path)) and IN_PROGRESS not in row:
                out.append(f"{field}: {file}::{name} does not exist")
    return out


def test_every_reference_field_has_a_row_naming_tests_that_exist() -> None:
    fields = reference_fields()
    assert len(fields) > 50  # the regex still reads reference.md's table
    rows = table_rows((ROOT / "docs" / "fields.md").read_text())
    assert problems(rows, fields) == []


def test_a_missing_row_and_a_missing_test_are_caught() -> None:
    here = "tests/unit/test_field_table.py"
    ok = f"| `spec.suspend` | x | `{here}::test_a_missing_row_and_a_missing_test_are_caught` |"
    gone = f"| `spec.gpu` | x | `{here}::test_that_was_renamed` |"
    planned = "| `spec.cost` | x (in progress: other engineer) | `tests/unit/x.py::test_later` |"
    rows = table_rows("\n".join([ok, gone, planned]))
    assert problems(rows, ["spec.suspend", "spec.gpu", "spec.cost", "spec.new"]) == [
        "spec.new: no row in docs/fields.md",
        f"spec.gpu: {here}::test_that_was_renamed does not exist",
    ]
