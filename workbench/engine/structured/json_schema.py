"""JSON Schema rewrites for constrained decoding (no mlx): `closed_schema` closes object
schemas, as OpenAI's strict mode and tool arguments require."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Where JSON Schema keeps subschemas: by name, in a list, or one (a list for old `items`).
_NAMED_SUBSCHEMAS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMAS = ("items", "additionalItems", "additionalProperties", "not", "if", "then", "else", "contains")


def closed_schema(schema: Any) -> Any:
    """`schema` with additionalProperties: false on each object schema (`type: object`
    or with `properties`) lacking it. Only subschemas are visited: values such as
    `default`, `const` or `enum` stay as they are."""
    if not isinstance(schema, Mapping):
        return schema
    out = dict(schema)
    for key in _NAMED_SUBSCHEMAS:
        if isinstance(out.get(key), Mapping):
            out[key] = {name: closed_schema(s) for name, s in out[key].items()}
    for key in (*_SUBSCHEMA_LISTS, *_SUBSCHEMAS):
        if isinstance(out.get(key), list):
            out[key] = [closed_schema(s) for s in out[key]]
        elif key in _SUBSCHEMAS and isinstance(out.get(key), Mapping):
            out[key] = closed_schema(out[key])
    is_object = out.get("type") == "object" or "properties" in out
    if is_object and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out
