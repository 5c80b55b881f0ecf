"""Compare a model's JSON Schema with the committed one.

The rule (docs/adr/0002-event-contracts.md): adding an optional property or an enum
value is compatible; any other change to what validates is breaking and needs a new
event version. Annotations (title, description, default, examples) are ignored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from carebridge_contracts._schemas import SCHEMA_DIR, JsonSchema, expected_schemas, load

_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$comment", "deprecated", "readOnly"}
)
_SCHEMA_MAPS = ("properties", "patternProperties", "dependentSchemas")
_SUBSCHEMAS = ("items", "additionalProperties", "contains", "propertyNames", "not")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SHAPE = ("type", "format")
_HANDLED = frozenset(
    {"properties", "required", "enum", *_SHAPE, *_SUBSCHEMAS, *_SCHEMA_LISTS, *_SCHEMA_MAPS}
)


def check_compatible(old_schema: JsonSchema, new_schema: JsonSchema) -> list[str]:
    """Human-readable breaking changes from `old_schema` to `new_schema` ([] if none)."""
    old = _normalise(old_schema, old_schema.get("$defs", {}), frozenset())
    new = _normalise(new_schema, new_schema.get("$defs", {}), frozenset())
    problems: list[str] = []
    _diff(old, new, "", problems)
    return problems


def check_all(schema_dir: Path | None = None, *, allow_new: bool = False) -> list[str]:
    """Every registered model (and the envelope) against its committed schema file.

    A model without a committed file is reported unless `allow_new` (used when
    comparing against an older baseline); a committed file without a model is
    reported because removing an event version breaks its subscribers.
    """
    directory = schema_dir or SCHEMA_DIR
    expected = expected_schemas()
    problems: list[str] = []
    for filename, schema in expected.items():
        path = directory / filename
        name = filename.removesuffix(".json")
        if path.is_file():
            problems.extend(f"{name}: {p}" for p in check_compatible(load(path), schema))
        elif not allow_new:
            problems.append(f"{name}: missing committed schema {path}")
    for path in sorted(directory.glob("*.json")):
        if path.name not in expected:
            problems.append(f"{path.stem}: committed schema has no registered model")
    return problems


def _normalise(node: Any, defs: dict[str, Any], seen: frozenset[str]) -> Any:
    """Inline local $refs, drop annotations, and spell `const` as a one-value `enum`."""
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/") and ref not in seen:
        target = defs.get(ref.removeprefix("#/$defs/"))
        if isinstance(target, dict):
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            return _normalise({**target, **siblings}, defs, seen | {ref})
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _ANNOTATIONS or key == "$defs":
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {k: _normalise(v, defs, seen) for k, v in value.items()}
        elif key in _SUBSCHEMAS:
            out[key] = _normalise(value, defs, seen)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_normalise(v, defs, seen) for v in value]
        else:
            out[key] = value
    if "const" in out and "enum" not in out:
        out["enum"] = [out.pop("const")]
    return out


def _diff(old: Any, new: Any, path: str, out: list[str]) -> None:
    where = f"property '{path}'" if path and not path.startswith("<") else f"schema{path}"
    if not (isinstance(old, dict) and isinstance(new, dict)):
        if old != new:
            out.append(f"{where}: schema changed from {_json(old)} to {_json(new)}")
        return
    if any(old.get(k) != new.get(k) for k in _SHAPE) or _list_shape(old) != _list_shape(new):
        out.append(f"{where}: type changed from {_describe(old)} to {_describe(new)}")
        return
    _diff_enum(old, new, where, out)
    _diff_properties(old, new, path, out)
    for key in _SUBSCHEMAS:
        before, after = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if isinstance(before, dict) and isinstance(after, dict):
            _diff(before, after, f"{path}[]" if key == "items" else f"{path}<{key}>", out)
        elif before != after:
            out.append(f"{where}: {key} changed from {_json(before)} to {_json(after)}")
    for key in _SCHEMA_LISTS:
        for i, (o, n) in enumerate(zip(old.get(key, []), new.get(key, []), strict=True)):
            _diff(o, n, f"{path}<{key}[{i}]>", out)
    for key in sorted((old.keys() | new.keys()) - _HANDLED):
        before, after = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if before != after:
            out.append(f"{where}: {key} changed from {_json(before)} to {_json(after)}")


def _diff_enum(old: dict[str, Any], new: dict[str, Any], where: str, out: list[str]) -> None:
    if "enum" in old and "enum" in new:
        removed = [v for v in old["enum"] if v not in new["enum"]]
        if removed:
            out.append(f"{where}: enum values removed: {', '.join(map(_json, removed))}")
    elif "enum" in old:
        out.append(f"{where}: enum restriction removed (was {_json(old['enum'])})")
    elif "enum" in new:
        out.append(f"{where}: enum restriction added ({_json(new['enum'])})")


def _diff_properties(old: dict[str, Any], new: dict[str, Any], path: str, out: list[str]) -> None:
    old_props: dict[str, Any] = old.get("properties", {})
    new_props: dict[str, Any] = new.get("properties", {})
    old_required = set(old.get("required", []))
    new_required = set(new.get("required", []))

    def sub(prop: str) -> str:
        return f"{path}.{prop}" if path else prop

    def name(prop: str) -> str:
        return f"'{sub(prop)}'"

    for prop, schema in old_props.items():
        if prop not in new_props:
            out.append(f"removed property {name(prop)}")
        else:
            _diff(schema, new_props[prop], sub(prop), out)
    for prop in sorted(new_required - old_required):
        if prop in old_props:
            out.append(f"property {name(prop)} became required")
        else:
            out.append(f"new required property {name(prop)}")
    for prop in sorted(old_required - new_required):
        if prop in new_props:
            out.append(f"property {name(prop)} became optional")


class _Absent:
    def __repr__(self) -> str:
        return "absent"


_ABSENT: Any = _Absent()


def _list_shape(node: dict[str, Any]) -> tuple[int, ...]:
    return tuple(len(node[k]) if isinstance(node.get(k), list) else -1 for k in _SCHEMA_LISTS)


def _describe(node: Any) -> str:
    if not isinstance(node, dict):
        return _json(node)
    for key in _SCHEMA_LISTS:
        if key in node:
            return f" {'|' if key in ('anyOf', 'oneOf') else '&'} ".join(
                _describe(n) for n in node[key]
            )
    kind = node.get("type", "any")
    text = "|".join(kind) if isinstance(kind, list) else str(kind)
    if "format" in node:
        text += f"({node['format']})"
    if kind == "array" and "items" in node:
        text += f" of {_describe(node['items'])}"
    if "enum" in node:
        text += f" {_json(node['enum'])}"
    return text


def _json(value: Any) -> str:
    if value is _ABSENT:
        return "absent"
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
