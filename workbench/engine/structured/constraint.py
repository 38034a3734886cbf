"""Constraint: a grammar an output must match (a JSON schema or a Lark grammar), as plain
data; structured.constrain enforces it token by token. No mlx."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from workbench.engine.errors import InvalidRequestError
from workbench.engine.structured.json_schema import closed_schema


@dataclass(frozen=True)
class Constraint:
    """A grammar the output must match, enforced token by token (engine/constrain.py):
    a JSON schema (`source` is its JSON text; '{"type": "object"}' for any JSON object)
    or a Lark grammar (llguidance's dialect, which can embed JSON schemas). `param` names
    the request field it came from, for error messages."""

    kind: Literal["json_schema", "lark"]
    source: str
    param: str = "response_format"

    @classmethod
    def json_schema(
        cls, schema: Mapping[str, Any] | bool, param: str = "response_format", *, strict: bool = False
    ) -> Constraint:
        """`strict` (OpenAI's strict mode) closes every object schema that does not say
        otherwise (additionalProperties: false), so no key outside the schema appears."""
        if not isinstance(schema, (Mapping, bool)):
            raise InvalidRequestError(f"{param}: the schema must be a JSON object", param=param)
        return cls("json_schema", json.dumps(closed_schema(schema) if strict else schema), param)
