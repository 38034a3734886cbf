"""Tool calls in a template's own format: a model whose template renders tools and asks for
`<tool_call>` blocks (tests.helpers.HERMES_TEMPLATE; mlx-lm reads it as json_tools) answers
`auto` unconstrained, in its own format, and the engine's text pipeline gives the calls back
parsed (mlx-lm's parser); `required` keeps the JSON-line grammar."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlx_lm.tokenizer_utils import load as load_tokenizer

from tests.helpers import HERMES_TEMPLATE, write_template_model
from workbench.engine import Engine, GenerationRequest, Message, SamplingParams
from workbench.engine.models.embedded import EMBEDDED_IDS
from workbench.engine.reply_text import ReplyText
from workbench.engine.streams import calls_of
from workbench.engine.structured.native_tools import parse_native_calls
from workbench.engine.structured.tools import ToolSpec, parse_calls, tool_constraint

CITY = {"type": "object", "properties": {"city": {"type": "string"}}}
WEATHER = ToolSpec("get_weather", "Weather in a city", CITY)
ASK = (Message("user", "What is the weather in Paris?"),)
GREEDY = SamplingParams(temperature=0)
REPLY = 'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.fixture(scope="module")
def hermes(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    source = Path(engine.load(EMBEDDED_IDS["f32"]).path or "")
    folder = tmp_path_factory.mktemp("hermes") / "smollm2-hermes"
    write_template_model(source, folder, HERMES_TEMPLATE)
    info = engine.model_info(str(folder), scope="any")
    yield info.id, folder
    engine.unload(info.id)
    shutil.rmtree(folder, ignore_errors=True)


def asked(model: str, choice: str, **rest: Any) -> GenerationRequest:
    """As the APIs send it: the tools, the choice, and the JSON-line grammar of that choice."""
    grammar = tool_constraint((WEATHER,), choice, parallel=False)  # one call, then the end
    return GenerationRequest(
        messages=ASK,
        model=model,
        sampling=GREEDY,
        tools=(WEATHER,),
        tool_choice=choice,
        constraint=grammar,
        **rest,
    )


def test_auto_goes_unconstrained_in_the_templates_own_format(
    engine: Engine, hermes: tuple[str, Path]
) -> None:
    """The greedy reply under `auto` is the one with no grammar at all: the model speaks natively
    (with the JSON-line grammar, a reply not starting with '{' would be forced elsewhere)."""
    model, _ = hermes
    native = engine.generate(asked(model, "auto", max_tokens=12))
    free = GenerationRequest(messages=ASK, model=model, sampling=GREEDY, max_tokens=12, tools=(WEATHER,))
    assert native.token_ids == engine.generate(free).token_ids
    assert engine.model_info(model).tool_dialect == "json_tools"


def test_required_keeps_the_json_line_grammar(engine: Engine, hermes: tuple[str, Path]) -> None:
    done = engine.generate(asked(hermes[0], "required", max_tokens=60))
    _, calls = parse_calls(done.text, (WEATHER,))
    assert done.calls == () and calls and calls[0].name == "get_weather", done.text


@pytest.mark.parametrize("step", [1, 2, 5])
def test_a_native_reply_streams_into_text_and_parsed_calls(hermes: tuple[str, Path], step: int) -> None:
    """The engine's text pipeline (the model's own detokenizer, stop strings, mlx-lm's parser)
    fed the tokens of a reply in the template's format, `step` tokens at a time."""
    tokenizer = load_tokenizer(hermes[1])
    ids = tokenizer.encode(REPLY, add_special_tokens=False)
    text = ReplyText(tokenizer, (), None, ("json_tools", (WEATHER,)))
    said, events = "", []
    for i in range(0, len(ids), step):
        for token in ids[i : i + step]:
            answer, _, calls = text.push(token)
            said, events = said + answer, [*events, *calls]
    answer, _, calls = text.finish()
    said, events = said + answer, [*events, *calls]
    assert said == "Checking.\n"
    assert [(c.name, json.loads(c.arguments)) for c in calls_of(events)] == [
        ("get_weather", {"city": "Paris"})
    ]


# Each family's own call format, as its chat template asks for it (mlx-lm's parser per dialect).
FAMILIES = {
    "json_tools": 'On it.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
    "</tool_call>",
    "mistral": 'On it.[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]',
    "qwen3_coder": (
        "On it.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
        "</function>\n</tool_call>"
    ),
    "pythonic": 'On it.<|tool_call_start|>[get_weather(city="Paris")]<|tool_call_end|>',
    "glm47": "On it.<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n"
    "</tool_call>",
    "function_gemma": "On it.<start_function_call>call:get_weather{city:<escape>Paris<escape>}"
    "<end_function_call>",
}


@pytest.mark.parametrize("dialect", sorted(FAMILIES))
def test_each_familys_format_parses_with_its_own_parser(dialect: str) -> None:
    said, calls = parse_native_calls(FAMILIES[dialect], dialect, (WEATHER,))
    assert said.strip() == "On it."
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})]


def test_what_is_not_a_whole_call_stays_text() -> None:
    assert parse_native_calls("no call <tool_ here", "json_tools", (WEATHER,)) == ("no call <tool_ here", [])
    cut = '<tool_call>\n{"name": "get_weather", "argu'  # max_tokens cut the call: it stays text
    assert parse_native_calls(cut, "json_tools", (WEATHER,)) == (cut, [])
