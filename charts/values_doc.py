"""The values table of charts/spotrun/README.md, generated from values.yaml and its schema.

    python charts/values_doc.py            # rewrite the table (`make chart-readme`)
    python charts/values_doc.py --check    # exit 1 naming what is stale or undocumented

A value is a key of values.yaml with a ``# --`` comment above it (helm-docs style); its
children, if any, are part of it. A key without one is a group and its keys are walked; a
key without one that holds no keys is undocumented, and that is an error. Every value needs
an entry in values.schema.json whose ``description`` is the comment's text (so editors and
`helm show values` say the same) and whose ``type``/``enum`` admit the default; the schema
names nothing values.yaml lacks. The table's rows are the values in file order: path,
default (JSON), description.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent / "spotrun"
BEGIN = ("<!-- The values table is generated from values.yaml and values.schema.json by "
         "`make chart-readme` (charts/values_doc.py); do not edit it here. -->")
END = "<!-- end of the generated values table -->"
FIX = "run `make chart-readme`"

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_]+):(?:\s|$)")
_DOC = re.compile(r"^ *# -- ?(?P<text>.*)$")
_MORE = re.compile(r"^ *# ?(?P<text>.*)$")
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "boolean": (bool,), "object": (dict,), "array": (list,),
    "integer": (int,), "number": (int, float),
}


@dataclass(frozen=True)
class Value:
    path: str  # dotted, e.g. "image.repository"
    default: Any
    description: str  # the `# --` comment, its lines joined


@dataclass(frozen=True)
class Keys:
    """What values.yaml says, key by key."""

    values: list[Value]
    undocumented: list[str]  # paths of keys that hold no keys and have no `# --` comment
    groups: list[str]  # paths of keys without a comment whose keys are walked


def _words(text: str) -> str:
    return " ".join(text.split())


def _lookup(tree: Any, path: list[str]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def read_keys(text: str) -> Keys:
    """The values, groups and undocumented keys of a values.yaml text (a block-style mapping,
    two-space indents, as the chart's is)."""
    tree = yaml.safe_load(text) or {}
    values: list[Value] = []
    undocumented: list[str] = []
    groups: list[str] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the keys enclosing the current line
    comment: list[str] | None = None  # the `# --` comment being read, if any
    inside: int | None = None  # the indent of the documented value whose keys we are in
    for line in text.splitlines():
        if (doc := _DOC.match(line)) is not None:
            comment = [doc.group("text")]
            continue
        if (more := _MORE.match(line)) is not None:
            if comment is not None:
                comment.append(more.group("text"))
            continue
        key = _KEY.match(line)
        if key is None:
            comment = None if not line.strip() else comment
            continue
        indent = len(key.group("indent"))
        stack = [(i, k) for i, k in stack if i < indent] + [(indent, key.group("key"))]
        if inside is not None and indent > inside:
            continue  # a key inside a documented value: part of it
        inside = None
        path = [k for _, k in stack]
        default = _lookup(tree, path)
        if comment is not None:
            values.append(Value(".".join(path), default, _words(" ".join(comment))))
            inside = indent
        elif isinstance(default, dict) and default:
            groups.append(".".join(path))
        else:
            undocumented.append(".".join(path))
        comment = None
    return Keys(values, undocumented, groups)


def schema_node(schema: dict[str, Any], path: str) -> dict[str, Any] | None:
    node: Any = schema
    for key in path.split("."):
        node = (node.get("properties") or {}).get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def schema_paths(schema: dict[str, Any], prefix: str = "") -> list[str]:
    """Every property path the schema names."""
    out: list[str] = []
    for key, node in (schema.get("properties") or {}).items():
        path = f"{prefix}{key}"
        out.append(path)
        if isinstance(node, dict):
            out += schema_paths(node, f"{path}.")
    return out


def _admits(node: dict[str, Any], default: Any) -> bool:
    if "enum" in node and default not in node["enum"]:
        return False
    kinds = node.get("type")
    if kinds is None:
        return True
    allowed = tuple(t for k in ([kinds] if isinstance(kinds, str) else kinds)
                    for t in _JSON_TYPES.get(k, ()))
    return isinstance(default, allowed) and not (isinstance(default, bool) and bool not in allowed)


def problems(keys: Keys, schema: dict[str, Any]) -> list[str]:
    """Each way values.yaml and values.schema.json disagree, with the fix."""
    out = [f"values.yaml {p}: no `# --` comment above it: document it (helm-docs style)"
           for p in keys.undocumented]
    for v in keys.values:
        node = schema_node(schema, v.path)
        if node is None:
            out.append(f"values.schema.json has no entry for {v.path}: add one with its type "
                       "and the description of values.yaml")
        elif _words(str(node.get("description", ""))) != v.description:
            out.append(f"values.schema.json {v.path}: description differs from the `# --` "
                       f"comment of values.yaml: make it {v.description!r}")
        elif not _admits(node, v.default):
            out.append(f"values.schema.json {v.path}: its type/enum refuse the default "
                       f"{v.default!r} of values.yaml: fix one of them")
    known = {v.path for v in keys.values} | set(keys.groups)
    inside = tuple(f"{v.path}." for v in keys.values)
    out += [f"values.schema.json names {p}, which values.yaml has not: remove it, or add the "
            "value" for p in schema_paths(schema) if p not in known and not p.startswith(inside)]
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(values: list[Value]) -> str:
    rows = ["| value | default | description |", "| --- | --- | --- |"]
    rows += [f"| `{v.path}` | `{_cell(json.dumps(v.default))}` | {_cell(v.description)} |"
             for v in values]
    return "\n".join(rows) + "\n"


def with_table(readme: str, values: list[Value]) -> str:
    """``readme`` with the text between the BEGIN and END markers replaced by the table."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{CHART / 'README.md'} lacks the markers of the values table: put "
                         f"{BEGIN!r} and {END!r} on lines of their own where it goes")
    return readme[:start] + BEGIN + "\n\n" + table(values) + "\n" + readme[end:]


def read(chart: Path = CHART) -> tuple[Keys, dict[str, Any], str]:
    """values.yaml's keys, the schema and the README of ``chart``."""
    schema = json.loads((chart / "values.schema.json").read_text())
    return read_keys((chart / "values.yaml").read_text()), schema, (chart / "README.md").read_text()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only report; write nothing")
    args = p.parse_args(argv)
    keys, schema, readme = read(CHART)
    found = problems(keys, schema)
    try:
        wanted = with_table(readme, keys.values)
    except ValueError as no_markers:
        print(f"chart values: {no_markers}", file=sys.stderr)
        return 1
    if args.check and wanted != readme:
        found.append(f"charts/spotrun/README.md: the values table is stale: {FIX}")
    elif not args.check and wanted != readme:
        (CHART / "README.md").write_text(wanted)
    for line in found:
        print(f"chart values: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
