"""The committed CRD is generated from the models: any drift fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from spotrun_operator import crd

pytestmark = pytest.mark.unit

CRD_YAML = Path(__file__).resolve().parents[3] / "manifests" / "crd.yaml"


def test_committed_crd_matches_the_models():
    assert CRD_YAML.read_text() == crd.render(), (
        "manifests/crd.yaml is stale: run `make crd` and commit the result"
    )


def _walk(schema, path="spec"):
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")


def test_every_field_has_a_description_and_a_type():
    root = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, schema in _walk(root["properties"]["spec"]):
        assert schema.get("description"), f"{path} has no description (kubectl explain)"
        assert schema.get("type"), f"{path} has no type (structural schemas need one)"
    for path, schema in _walk(root["properties"]["status"], "status"):
        assert schema.get("description"), path


def test_no_constructs_a_structural_schema_forbids():
    text = yaml.safe_dump(crd.crd())
    for word in ("$ref", "anyOf", "title:", "$defs", "additionalProperties: false"):
        assert word not in text


def test_printer_columns_and_short_name():
    version = crd.crd()["spec"]["versions"][0]
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names == ["Phase", "Progress", "Checkpoint", "Preemptions", "Nodes", "Age"]
    assert crd.crd()["spec"]["names"]["shortNames"] == ["rtj"]
    assert version["subresources"] == {"status": {}}
