"""Request shapes clients send to `POST /v1/responses`, recorded from the clients themselves
(Codex CLI 0.171.0 through `codex exec` with a custom `wire_api = "responses"` provider,
openai-agents 0.24.0's OpenAIResponsesModel, openai-python 3.57.0's stream helper) against a
recording server on 2026-12-02. Texts are shortened; field names, nesting and values are theirs.
Sources: openai/codex codex-rs/codex-api/src/common.rs (ResponsesApiRequest),
codex-rs/protocol/src/models.rs (ResponseItem), codex-rs/tools/src/tool_spec.rs (ToolSpec);
openai/openai-agents-python src/agents/models/openai_responses.py (_build_response_create_kwargs)."""

from __future__ import annotations

from typing import Any

from tests.agent_shapes import Shape

CODEX_SOURCE = "openai/codex 0.171.0 codex exec, custom provider wire_api=responses (recorded)"
AGENTS_SOURCE = "openai/openai-agents-python 0.24.0 OpenAIResponsesModel (recorded)"
SDK_SOURCE = (
    "openai/openai-python 3.57.0 client.responses.stream(text_format=..., tools=[pydantic_function_tool])"
)
CODEX_HEADERS = {
    "originator": "codex_exec",
    "user-agent": "codex_exec/0.171.0 (Debian 12.0.0; x86_64) xterm (codex_exec; 0.171.0)",
    "session-id": "0b6c1d2e-3f40-4a5b-8c6d-7e8f9a0b1c2d",
    "x-codex-beta-features": "remote_compaction_v2",
    "accept": "text/event-stream",
}
EXEC_COMMAND = {
    "type": "function",
    "name": "exec_command",
    "description": "Runs a command in a PTY, returning output or a session ID for ongoing interaction.",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {
            "cmd": {"type": "string", "description": "Shell command to execute."},
            "justification": {"type": "string"},
            "login": {"type": "boolean"},
            "max_output_tokens": {"type": "number"},
            "prefix_rule": {"type": "array", "items": {"type": "string"}},
            "sandbox_permissions": {"type": "string", "enum": ["use_default", "require_escalated"]},
            "shell": {"type": "string"},
            "tty": {"type": "boolean"},
            "workdir": {"type": "string"},
            "yield_time_ms": {"type": "number"},
        },
        "required": ["cmd"],
        "additionalProperties": False,
    },
}
WRITE_STDIN = {
    "type": "function",
    "name": "write_stdin",
    "description": "Writes characters to an existing unified exec session and returns recent output.",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {"session_id": {"type": "number"}, "chars": {"type": "string"}},
        "required": ["session_id"],
        "additionalProperties": False,
    },
}
MULTI_AGENT = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Tools for spawning and managing sub-agents.",
    "tools": [
        {
            "type": "function",
            "name": "spawn_agent",
            "description": "Spawn a sub-agent for a well-scoped task.",
            "strict": False,
            "parameters": {
                "type": "object",
                "properties": {"message": {"type": "string"}},
                "required": ["message"],
                "additionalProperties": False,
            },
        }
    ],
}
APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Use the `apply_patch` tool to edit files.",
    "format": {
        "type": "grammar",
        "syntax": "lark",
        "definition": (
            'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\n'
            'end_patch: "*** End Patch" LF?'
        ),
    },
}
DEVELOPER = "You are a coding agent running in the Codex CLI, a terminal-based coding assistant."
ENVIRONMENT = (
    "<environment_context>\n  <cwd>/tmp/codexwork</cwd>\n  <shell>bash</shell>\n"
    "  <current_date>2026-12-02</current_date>\n  <timezone>Etc/UTC</timezone>\n</environment_context>"
)
WEATHER_STRICT = {
    "name": "get_weather",
    "parameters": {
        "properties": {"city": {"title": "City", "type": "string"}},
        "required": ["city"],
        "title": "get_weather_args",
        "type": "object",
        "additionalProperties": False,
    },
    "strict": True,
    "type": "function",
    "description": "Get the weather for a city.",
}
FINAL_OUTPUT = {
    "format": {
        "type": "json_schema",
        "name": "final_output",
        "strict": True,
        "schema": {
            "properties": {
                "city": {"title": "City", "type": "string"},
                "summary": {"title": "Summary", "type": "string"},
            },
            "required": ["city", "summary"],
            "title": "Out",
            "type": "object",
            "additionalProperties": False,
        },
    }
}


def _message(role: str, text: str, id_: str) -> dict[str, Any]:
    return {"type": "message", "id": id_, "role": role, "content": [{"type": "input_text", "text": text}]}


def responses_shapes(model: str) -> list[Shape]:
    """Every recorded /v1/responses shape, naming `model` as the client's configured model.
    A body whose previous_response_id is "{previous}" continues a response made just before."""
    codex_input = [
        _message("developer", DEVELOPER, "msg_934c4d9d"),
        _message("user", ENVIRONMENT, "msg_01a2386d"),
        _message("user", "Run echo hi", "msg_01a2386e"),
    ]
    codex = {
        "model": model,
        "stream": True,
        "input": codex_input,
        "tools": [
            EXEC_COMMAND,
            WRITE_STDIN,
            MULTI_AGENT,
            {"type": "web_search", "external_web_access": True},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "4f1e2d3c-5b6a-4789-9abc-def012345678",
        "client_metadata": {"session_id": "0b6c1d2e", "thread_id": "4f1e2d3c", "turn_id": "1"},
    }
    codex_gpt = {
        **codex,
        "reasoning": {"effort": "high"},
        "text": {"verbosity": "low"},
        "tools": [
            EXEC_COMMAND,
            WRITE_STDIN,
            APPLY_PATCH,
            {"type": "tool_search", "execution": "client", "description": "Search tools"},
            {"type": "web_search", "external_web_access": False, "search_content_types": ["text", "image"]},
        ],
    }
    codex_result = {
        **codex,
        "input": [
            *codex_input,
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "run echo"}],
                "content": None,
                "encrypted_content": None,
            },
            {
                "type": "function_call",
                "status": "completed",
                "id": "fc_1",
                "name": "exec_command",
                "arguments": '{"cmd": "echo hi"}',
                "call_id": "call_1",
            },
            {
                "type": "function_call_output",
                "id": "fco_01a2386d",
                "call_id": "call_1",
                "output": (
                    "Chunk ID: d28e0c\nWall time: 0.1491 seconds\nProcess exited with code 0\nOutput:\nhi\n"
                ),
            },
        ],
    }
    codex_patch = {
        **codex_gpt,
        "input": [
            *codex_input,
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [],
                "content": None,
                "encrypted_content": "gAAAA-opaque",
            },
            {
                "type": "message",
                "status": "completed",
                "id": "msg_0",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Creating the file.", "annotations": []}],
                "phase": "commentary",
            },
            {
                "type": "custom_tool_call",
                "id": "ctc_1",
                "status": "completed",
                "call_id": "call_p",
                "name": "apply_patch",
                "input": "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n",
            },
            {
                "type": "custom_tool_call_output",
                "id": "ctco_1",
                "call_id": "call_p",
                "output": "Exit code: 0\nOutput:\nSuccess. Updated the following files:\nA hello.txt\n",
            },
        ],
    }
    agents = {
        "model": model,
        "include": [],
        "input": [{"content": "Weather in Paris?", "role": "user"}],
        "instructions": "You are helpful.",
        "tools": [WEATHER_STRICT],
    }
    agents_streamed = {
        **agents,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "max_output_tokens": 256,
        "parallel_tool_calls": True,
        "reasoning": {"effort": "low", "summary": "auto"},
        "store": False,
        "temperature": 0.2,
        "tool_choice": "auto",
        "truncation": "auto",
        "text": FINAL_OUTPUT,
    }
    agents_result = {
        **agents,
        "input": [
            {"content": "Weather in Paris?", "role": "user"},
            {
                "id": "rs_1",
                "summary": [{"text": "need weather", "type": "summary_text"}],
                "type": "reasoning",
                "encrypted_content": "ENC",
            },
            {
                "arguments": '{"city":"Paris"}',
                "call_id": "call_1",
                "name": "get_weather",
                "type": "function_call",
                "id": "fc_1",
                "status": "completed",
            },
            {"call_id": "call_1", "output": "Sunny in Paris", "type": "function_call_output"},
        ],
    }
    agents_chained = {
        **agents,
        "input": [{"call_id": "call_1", "output": "Sunny in Paris", "type": "function_call_output"}],
        "previous_response_id": "{previous}",
    }
    sdk_helper = {
        "model": model,
        "stream": True,
        "input": "What is the weather in Paris? Answer as JSON.",
        "text": {
            "format": {
                "type": "json_schema",
                "strict": True,
                "name": "Weather",
                "schema": {
                    "properties": {
                        "city": {"title": "City", "type": "string"},
                        "temp_c": {"title": "Temp C", "type": "number"},
                    },
                    "required": ["city", "temp_c"],
                    "title": "Weather",
                    "type": "object",
                    "additionalProperties": False,
                },
            }
        },
        "tools": [
            {
                "type": "function",
                "name": "GetWeather",
                "description": None,
                "parameters": {
                    "properties": {"city": {"title": "City", "type": "string"}},
                    "required": ["city"],
                    "title": "GetWeather",
                    "type": "object",
                    "additionalProperties": False,
                },
                "strict": True,
            }
        ],
    }
    agents_headers = {"user-agent": "Agents/Python 0.24.0"}
    return [
        Shape("codex", "first-turn", "responses", CODEX_SOURCE, codex, CODEX_HEADERS),
        Shape("codex", "first-turn-gpt-slug", "responses", CODEX_SOURCE, codex_gpt, CODEX_HEADERS),
        Shape("codex", "tool-result", "responses", CODEX_SOURCE, codex_result, CODEX_HEADERS),
        Shape("codex", "apply-patch-replay", "responses", CODEX_SOURCE, codex_patch, CODEX_HEADERS),
        Shape("agents-sdk", "first-turn", "responses", AGENTS_SOURCE, agents, agents_headers),
        Shape(
            "agents-sdk", "streamed-structured", "responses", AGENTS_SOURCE, agents_streamed, agents_headers
        ),
        Shape("agents-sdk", "tool-result", "responses", AGENTS_SOURCE, agents_result, agents_headers),
        Shape(
            "agents-sdk", "previous-response-id", "responses", AGENTS_SOURCE, agents_chained, agents_headers
        ),
        Shape("openai-python", "stream-helper", "responses", SDK_SOURCE, sdk_helper),
    ]
