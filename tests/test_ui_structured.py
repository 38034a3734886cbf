"""The chat tab's schema box logic (workbench/ui/structured.py), without a browser or a
model: what a typed schema becomes, and what a finished reply shows in the panel. (The
browser tests run it against the real model.)"""

from __future__ import annotations

import json

import pytest

from workbench.engine import GenerationStats, InvalidRequestError
from workbench.ui import structured


def stats(finish_reason: str) -> GenerationStats:
    return GenerationStats("m", 3, 4, 0.1, 30.0, 10.0, 0.5, finish_reason, 0.5)  # type: ignore[arg-type]


def test_a_typed_schema_becomes_the_constraint_response_format_would_make() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    assert structured.read_schema("", True) is None and structured.read_schema("  \n", True) is None
    assert structured.read_schema(None, True) is None
    strict = structured.read_schema(json.dumps(schema), True)
    assert strict is not None and strict.kind == "json_schema"
    assert json.loads(strict.source)["additionalProperties"] is False
    loose = structured.read_schema(json.dumps(schema), False)
    assert loose is not None and "additionalProperties" not in json.loads(loose.source)


@pytest.mark.parametrize(("text", "why"), [('{"type": ', "not valid JSON"), ("[1, 2]", "JSON object")])
def test_a_bad_schema_is_an_error_naming_the_schema(text: str, why: str) -> None:
    with pytest.raises(InvalidRequestError, match=why) as caught:
        structured.read_schema(text, True)
    assert structured.schema_error(caught.value) == str(caught.value)
    assert str(caught.value).startswith("JSON schema: ")
    status, panel = structured.describe_schema(text, True)
    assert why in status and panel is None
    # Errors about anything else are not the schema box's to show.
    assert structured.schema_error(InvalidRequestError("top_p: bad", param="top_p")) is None


def test_the_panel_shows_a_finished_reply_or_why_it_is_not_json() -> None:
    done = structured.outcome_of('{"n": 3}', stats("stop"))
    assert done == {"parsed": {"n": 3}}
    status, panel = structured.show_outcome(done)
    assert panel == {"n": 3} and "parsed" in status
    cut = structured.outcome_of('{"n": ', stats("length"))
    assert cut is not None and "raise Max tokens" in cut["error"]
    status, panel = structured.show_outcome(cut)
    assert "Max tokens" in status and panel is None
    assert structured.outcome_of("{", stats("cancelled")) == {"error": structured.STOPPED}
    assert structured.describe_schema("", True) == ("", None)  # empty box: free text, empty panel
