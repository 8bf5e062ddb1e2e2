"""The public-style examples are adapted to spotrun in at most 15 changed lines each.

Each folder holds ``original.py`` (the script as written without spotrun) and ``train.py`` (the
same script adapted). Changed lines are counted with difflib over the code below each module
docstring: a replaced block counts its longer side, an added or removed block its length.
"""

from __future__ import annotations

import ast
import difflib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ADAPTED = ("word_language_model", "time_sequence_prediction", "digits_amp")
MAX_CHANGED = 15


def code_lines(source: str) -> list[str]:
    """The lines of ``source`` below its module docstring (all of them if it has none)."""
    lines = source.splitlines()
    body = ast.parse(source).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        if isinstance(body[0].value.value, str) and body[0].end_lineno is not None:
            return lines[body[0].end_lineno :]
    return lines


def changed_lines(before: list[str], after: list[str]) -> int:
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    return sum(
        max(i2 - i1, j2 - j1)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    )


def imported_modules(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def read(example: str, name: str) -> str:
    return (EXAMPLES / example / name).read_text()


@pytest.mark.parametrize("example", ADAPTED)
def test_the_adaptation_changes_at_most_15_lines(example: str) -> None:
    before, after = code_lines(read(example, "original.py")), code_lines(read(example, "train.py"))
    changed = changed_lines(before, after)
    diff = "\n".join(difflib.unified_diff(before, after, "original.py", "train.py", lineterm=""))
    assert 0 < changed <= MAX_CHANGED, f"{example}: {changed} changed lines\n{diff}"


@pytest.mark.parametrize("example", ADAPTED)
def test_the_original_does_not_know_spotrun_and_the_adapted_one_uses_it(example: str) -> None:
    original, adapted = read(example, "original.py"), read(example, "train.py")
    assert "spotrun" not in imported_modules(original)
    assert "spotrun" not in "\n".join(code_lines(original))
    assert "spotrun" in imported_modules(adapted)


@pytest.mark.parametrize(
    ("example", "api"),
    [
        ("word_language_model", ["ckpt.state", "ckpt.range(", "ckpt.updating()"]),
        ("time_sequence_prediction", ["optim.LBFGS(", "optimizer=optimizer", "ckpt.range("]),
        ("digits_amp", ["GradScaler(", "scaler=scaler", "scheduler=scheduler", "ckpt.range("]),
    ],
)
def test_each_adaptation_shows_what_its_docstring_promises(example: str, api: list[str]) -> None:
    code = "\n".join(code_lines(read(example, "train.py")))
    assert [name for name in api if name not in code] == []


def test_the_count_sees_added_replaced_reindented_and_removed_lines() -> None:
    before = ["a = 1", "for p in ps:", "    p.add_(1)", "b = 2", "c = 3"]
    after = ["import x", "a = 1", "with x.updating():", "    for p in ps:", "        p.add_(1)"]
    after += ["b = 2"]
    # +1 import, the 2-line loop replaced by 3 lines (3), "c = 3" removed (1)
    assert changed_lines(before, after) == 5
    assert changed_lines(before, before) == 0


def test_the_module_docstring_is_not_counted_but_code_is() -> None:
    source = '"""One line.\n\nMore words.\n"""\n\nimport os\n'
    assert code_lines(source) == ["", "import os"]
    assert code_lines("import os\n") == ["import os"]
