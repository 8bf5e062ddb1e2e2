"""The chart README's values table is what charts/values_doc.py makes of values.yaml and
values.schema.json, and those two agree: every value documented, every value in the schema
with the same description and a type that admits its default, nothing in the schema that
values.yaml lacks. A value added without its docs, or a README left stale, fails here."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _load_values_doc() -> Any:
    """charts/values_doc.py, loaded by path: charts/ on sys.path made charts/spotrun a
    namespace package ``spotrun`` for every process started afterwards with the session's
    sys.path (a spawned rank of tests/integration/test_gang_shards.py: "cannot import name
    'Checkpointer' from 'spotrun' (unknown location)" on a fresh-clone make test)."""
    spec = importlib.util.spec_from_file_location("values_doc", REPO / "charts/values_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["values_doc"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


values_doc = _load_values_doc()

VALUES = """\
# A file comment, not a value.
image:
  # -- Operator image,
  # on two lines.
  repository: ghcr.io/x/operator
# -- Container resources.
resources:
  requests:
    cpu: 100m
replicas: 1
"""
SCHEMA: dict[str, Any] = {"properties": {
    "image": {"type": "object", "properties": {
        "repository": {"type": "string", "description": "Operator image, on two lines."}}},
    "resources": {"type": "object", "description": "Container resources."},
}}


def test_the_committed_readme_table_is_the_generated_one() -> None:
    keys, _, readme = values_doc.read()
    assert readme == values_doc.with_table(readme, keys.values), (
        "charts/spotrun/README.md: the values table is stale: run `make chart-readme`")


def test_values_yaml_and_the_schema_agree_on_every_value() -> None:
    keys, schema, _ = values_doc.read()
    assert len(keys.values) > 40  # the parser still reads values.yaml's `# --` comments
    assert values_doc.problems(keys, schema) == []


def test_the_table_has_a_row_per_value_with_its_default() -> None:
    _, _, readme = values_doc.read()
    assert "| `image.repository` | `\"ghcr.io/spotrun/operator\"` | Operator image" in readme
    assert "| `replicas` | `1` |" in readme
    assert "| `resources` | `{\"requests\": {\"cpu\": \"100m\"" in readme
    assert "`resources.requests" not in readme  # a documented map is one row


def test_comments_make_values_a_map_under_one_is_one_value_and_groups_are_walked() -> None:
    keys = values_doc.read_keys(VALUES)
    assert [(v.path, v.default, v.description) for v in keys.values] == [
        ("image.repository", "ghcr.io/x/operator", "Operator image, on two lines."),
        ("resources", {"requests": {"cpu": "100m"}}, "Container resources."),
    ]
    assert keys.groups == ["image"]
    assert keys.undocumented == ["replicas"]


def test_each_disagreement_is_named_with_its_fix() -> None:
    keys = values_doc.read_keys(VALUES.replace("replicas: 1\n", "# -- Replicas.\nreplicas: 1\n"))
    assert values_doc.problems(keys, SCHEMA) == [
        "values.schema.json has no entry for replicas: add one with its type and the "
        "description of values.yaml"]

    schema: dict[str, Any] = {"properties": {
        **SCHEMA["properties"],
        "replicas": {"type": "string", "description": "Replicas."},
        "resources": {"type": "object", "description": "Resources of the container."},
        "gone": {"type": "string", "description": "A value removed from values.yaml."},
    }}
    found = values_doc.problems(keys, schema)
    assert any("resources: description differs" in p and "Container resources." in p
               for p in found), found
    assert any("replicas: its type/enum refuse the default 1" in p for p in found), found
    assert any("names gone, which values.yaml has not" in p for p in found), found
    assert len(found) == 3, found


def test_an_undocumented_value_is_named() -> None:
    found = values_doc.problems(values_doc.read_keys(VALUES), SCHEMA)
    assert found == ["values.yaml replicas: no `# --` comment above it: document it "
                     "(helm-docs style)"]


def test_check_mode_fails_on_a_stale_table_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    chart = tmp_path / "spotrun"
    chart.mkdir()
    (chart / "values.yaml").write_text(VALUES.replace("replicas: 1\n", ""))
    (chart / "values.schema.json").write_text(json.dumps(SCHEMA))
    stale = f"# chart\n\n{values_doc.BEGIN}\n| old |\n{values_doc.END}\n"
    (chart / "README.md").write_text(stale)
    monkeypatch.setattr(values_doc, "CHART", chart)

    assert values_doc.main(["--check"]) == 1
    assert "the values table is stale: run `make chart-readme`" in capsys.readouterr().err
    assert (chart / "README.md").read_text() == stale

    assert values_doc.main([]) == 0
    written = (chart / "README.md").read_text()
    assert "| `image.repository` | `\"ghcr.io/x/operator\"` | Operator image, on two" in written
    assert "| old |" not in written
    assert values_doc.main(["--check"]) == 0


def test_a_readme_without_the_markers_is_refused_naming_them() -> None:
    with pytest.raises(ValueError, match="lacks the markers of the values table"):
        values_doc.with_table("# chart\n", [])
