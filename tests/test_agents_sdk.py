"""The OpenAI Agents SDK (openai-agents) running an agent with one function tool against the
live server's Responses API, as its users run one: the SDK's own model class, run loop and
tool execution, no network (tracing off)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from agents import Agent, ModelSettings, Runner, function_tool, set_tracing_disabled
from agents.models.openai_responses import OpenAIResponsesModel
from openai import AsyncOpenAI

from api.app import create_app
from tests.helpers import LiveServer
from workbench.config import Settings
from workbench.engine import Engine
from workbench.engine.models.embedded import EMBEDDED_IDS


@pytest.fixture(scope="module")
def server(settings: Settings, engine: Engine) -> Iterator[LiveServer]:
    set_tracing_disabled(True)  # the SDK would otherwise export traces to OpenAI
    with LiveServer(create_app(settings, engine, with_ui=False)) as live:
        yield live


def weather_agent(url: str, cities: list[str]) -> Agent:
    @function_tool
    def get_weather(city: str) -> str:
        """Get the weather for a city."""
        cities.append(city)
        return f"Sunny in {city}"

    client = AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-local", max_retries=0, timeout=300)
    return Agent(
        name="weather",
        instructions="Answer with the weather tool.",
        tools=[get_weather],
        model=OpenAIResponsesModel(model=EMBEDDED_IDS["f32"], openai_client=client),
        # The 135M model is told to call the tool; the run ends with the tool's result.
        model_settings=ModelSettings(tool_choice="required", max_tokens=48, temperature=0),
        tool_use_behavior="stop_on_first_tool",
    )


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
def test_an_agent_calls_its_function_tool_through_the_responses_api(
    server: LiveServer, streamed: bool
) -> None:
    cities: list[str] = []
    agent = weather_agent(server.url, cities)
    ask = "What is the weather in Paris?"
    if streamed:

        async def run() -> object:
            result = Runner.run_streamed(agent, ask, max_turns=2)
            async for _ in result.stream_events():
                pass
            return result

        result = asyncio.run(run())
    else:
        result = Runner.run_sync(agent, ask, max_turns=2)
    assert len(cities) == 1 and cities[0]  # the SDK parsed our function_call item and ran the tool
    assert result.final_output == f"Sunny in {cities[0]}"
