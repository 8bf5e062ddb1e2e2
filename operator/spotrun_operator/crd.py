"""Generate the CRD from the pydantic models: ``python -m spotrun_operator.crd [OUT]``.

Pydantic's JSON schema becomes a structural OpenAPI v3 schema: ``$ref`` inlined, optional
``anyOf [X, null]`` collapsed to X, titles dropped, object defaults reduced to ``{}`` (the
API server then fills the inner defaults), descriptions kept on every field.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml
from pydantic import BaseModel

from . import models

_KEEP = {
    "type",
    "description",
    "default",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "items",
    "properties",
    "required",
    "additionalProperties",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
    "format",
    "nullable",
}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = dict(defs[node["$ref"].split("/")[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **extra}, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o != {"type": "null"}]
        if len(options) != 1:
            raise ValueError(f"cannot express anyOf {node['anyOf']} structurally")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        merged = {**_resolve(options[0], defs), **rest}
        if merged.get("default", 0) is None:
            del merged["default"]
        return _resolve(merged, defs)
    return {k: _resolve(v, defs) for k, v in node.items()}


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "const":
            out["enum"] = [value]
        elif key in _KEEP:
            out[key] = value
    if "const" in node and "type" not in out:
        out["type"] = "string"
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "properties" in out:
        out["properties"] = {k: _structural(v) for k, v in out["properties"].items()}
        out.setdefault("type", "object")
    if isinstance(out.get("items"), dict):
        out["items"] = _structural(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _structural(out["additionalProperties"])
    elif out.get("additionalProperties") is False:
        del out["additionalProperties"]  # structural schemas prune unknown fields instead
    elif out.get("additionalProperties") is True:
        del out["additionalProperties"]
        out["x-kubernetes-preserve-unknown-fields"] = True
    if isinstance(out.get("default"), dict):
        out["default"] = {}
    if out.get("type") == "object" and "properties" not in out:
        if "additionalProperties" not in out:
            out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a pydantic model."""
    raw = model.model_json_schema(mode="validation")
    defs = raw.pop("$defs", {})
    return _structural(_resolve(raw, defs))


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition of ResumableTrainingJob."""
    spec = schema_of(models.JobSpec)
    spec["description"] = "What to train and how to carry it through preemptions."
    status = schema_of(models.JobStatus)
    status["description"] = "What the operator observed and decided (written by it only)."
    root = {
        "type": "object",
        "description": "A PyTorch training job that survives spot preemptions by resuming "
        "from its newest checkpoint.",
        "required": ["spec"],
        "x-kubernetes-validations": [models.NAME_RULE],
        "properties": {
            "apiVersion": {"type": "string", "description": "spotrun.dev/v1alpha1"},
            "kind": {"type": "string", "description": "ResumableTrainingJob"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    columns = [
        ("Phase", "string", ".status.phase", "One-word summary"),
        ("Progress", "string", ".status.progress", "Training progress"),
        ("Checkpoint", "integer", ".status.lastCheckpoint.step", "Step of the last checkpoint"),
        ("Preemptions", "integer", ".status.preemptions", "Attempts ended by the platform"),
        ("Nodes", "string", ".status.gang.nodes", "Gang pods running / wanted (nodes.max > 1)"),
        ("Age", "date", ".metadata.creationTimestamp", "Time since creation"),
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{models.PLURAL}.{models.GROUP}"},
        "spec": {
            "group": models.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": models.KIND,
                "listKind": f"{models.KIND}List",
                "plural": models.PLURAL,
                "singular": models.SINGULAR,
                "shortNames": [models.SHORT_NAME],
                "categories": ["all", "spotrun"],
            },
            "versions": [
                {
                    "name": models.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": root},
                    "additionalPrinterColumns": [
                        {"name": n, "type": t, "jsonPath": p, "description": d}
                        for n, t, p, d in columns
                    ],
                }
            ],
        },
    }


def render() -> str:
    header = "# Generated by `make crd` (python -m spotrun_operator.crd) from models.py.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)


def write(text: str, argv: list[str]) -> int:
    """``python -m ... [OUT]``: the generated text into OUT, or to stdout."""
    if argv:
        with open(argv[0], "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(write(render(), sys.argv[1:]))
