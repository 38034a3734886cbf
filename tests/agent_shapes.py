"""Request shapes coding agents and editors send to OpenAI- and Anthropic-compatible servers,
collected from their public source and documentation (each shape names where it comes
from). Texts are shortened; field names, nesting and the odd values are theirs. Model ids
are the ones the README's recipes configure (an agent sends whatever id it is set to).

Codex CLI speaks only /v1/responses since Feb 2026 (its chat wire API was removed:
openai/codex#7897, #31083); its shapes belong with the Responses API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

# What each agent's tools look like: Claude Code and opencode write JSON Schema 2020-12 with
# `$schema` and closed objects (zod's toJSONSchema); Claude Code also uses propertyNames.
CC_BASH = {
    "name": "Bash",
    "description": "Executes a bash command and returns its output. Use it to list files, run tests ...",
    "input_schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "command": {"description": "The command to execute", "type": "string"},
            "timeout": {"description": "Optional timeout in milliseconds (max 600000)", "type": "number"},
            "description": {"description": "What this command does, in 5-10 words", "type": "string"},
            "run_in_background": {"description": "Run this command in the background", "type": "boolean"},
        },
        "required": ["command"],
        "additionalProperties": False,
    },
}
CC_READ = {
    "name": "Read",
    "description": "Reads a file from the local filesystem.",
    "input_schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "file_path": {"description": "The absolute path to the file to read", "type": "string"},
            "offset": {"description": "The line number to start reading from", "type": "number"},
            "limit": {"description": "The number of lines to read", "type": "number"},
            "env": {
                "description": "Extra environment (propertyNames, as Claude Code's own schemas use)",
                "type": "object",
                "propertyNames": {"pattern": "^[A-Z_]+$"},
                "additionalProperties": {"type": "string"},
            },
        },
        "required": ["file_path"],
        "additionalProperties": False,
    },
}
CC_SYSTEM = [
    {
        "type": "text",
        "text": "x-anthropic-billing-header: cc_version=2.1.146.5a9; cc_entrypoint=cli; cch=dacd3;",
    },
    {
        "type": "text",
        "text": "You are Claude Code, Anthropic's official CLI for Claude.",
        "cache_control": {"type": "ephemeral", "ttl": "1h"},
    },
    {
        "type": "text",
        "text": "You are an interactive agent that helps users with software engineering tasks. "
        "Use the tools available to you.\n# Environment\n - Primary working directory: /home/u/proj",
        "cache_control": {"type": "ephemeral"},
    },
]
CC_HEADERS = {
    "anthropic-version": "2023-06-01",
    "x-app": "cli",
    "user-agent": "claude-cli/2.1.146 (external, cli)",
    "x-claude-code-session-id": "8b1e7c2a-0d4f-4a53-9b7e-2f1a6c9d0e11",
    "anthropic-dangerous-direct-browser-access": "true",
}
CC_BETAS = [
    "claude-code-20250219",
    "interleaved-thinking-2025-05-14",
    "fine-grained-tool-streaming-2025-05-14",
    "context-management-2025-06-27",
    "effort-2025-11-24",
]
CC_METADATA = {
    "user_id": json.dumps(
        {"device_id": "3f2c" * 16, "account_uuid": "", "session_id": "8b1e7c2a-0d4f-4a53-9b7e-2f1a6c9d0e11"}
    )
}

OPENCODE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "bash",
            "description": "Executes a given bash command in a persistent shell session.",
            "parameters": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {
                    "command": {"type": "string", "description": "The command to execute"},
                    "timeout": {"type": "number", "description": "Optional timeout in milliseconds"},
                    "description": {"type": "string", "description": "What this command does in 5-10 words"},
                },
                "required": ["command", "description"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "read",
            "description": "Reads a file from the local filesystem.",
            "parameters": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {
                    "filePath": {"type": "string", "description": "The path to the file to read"},
                    "offset": {"type": "number", "description": "The line to start from (0-based)"},
                    "limit": {"type": "number", "description": "The number of lines to read"},
                },
                "required": ["filePath"],
                "additionalProperties": False,
            },
        },
    },
]
OPENCODE_SYSTEM = [
    {
        "role": "system",
        "content": "You are opencode, an interactive CLI tool that helps users with software "
        "engineering tasks.",
    },
    {
        "role": "system",
        "content": "Here is useful information about the environment:\n<env>\n"
        "  Working directory: /home/u/proj\n</env>",
    },
]
CLINE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "execute_command",
            "description": "Request to execute a CLI command on the system.",
            "parameters": {
                "type": "object",
                "properties": {
                    "command": {"type": "string", "description": "The CLI command to execute."},
                    "requires_approval": {
                        "type": "boolean",
                        "description": "Whether the command needs approval",
                    },
                },
                "required": ["command", "requires_approval"],
                "additionalProperties": False,
            },
        },
    }
]
CONTINUE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Use this tool if you need to view the contents of an existing file.",
            "parameters": {
                "type": "object",
                "required": ["filepath"],
                "properties": {"filepath": {"type": "string", "description": "The path of the file to read"}},
            },
        },
    }
]
ASK = "list the python files here"


@dataclass(frozen=True)
class Shape:
    """One request as an agent sends it: which API, the body, the headers, and the source."""

    agent: str
    turn: str
    api: Literal["chat", "completions", "messages", "count_tokens", "responses"]
    source: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    betas: tuple[str, ...] = ()  # Claude Code: the beta Messages API (?beta=true, anthropic-beta)

    @property
    def id(self) -> str:
        return f"{self.agent}:{self.turn}"


def shapes(model: str) -> list[Shape]:
    """Every collected shape, naming `model` as the agent's configured model."""
    cc_first = {
        "model": model,
        "max_tokens": 32000,
        "stream": True,
        "metadata": CC_METADATA,
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "system": CC_SYSTEM,
        "tools": [CC_BASH, CC_READ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": "<system-reminder>\nContext: CLAUDE.md says use pytest.\n</system-reminder>",
                    },
                    {"type": "text", "text": ASK, "cache_control": {"type": "ephemeral"}},
                ],
            }
        ],
    }
    cc_tool_result = {
        **{k: v for k, v in cc_first.items() if k != "messages"},
        "thinking": {"type": "adaptive"},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": ASK}]},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "thinking",
                        "thinking": "I should list .py files.",
                        "signature": "EpkDCkYICxgCKkDE",
                    },
                    {"type": "text", "text": "I'll list them."},
                    {
                        "type": "tool_use",
                        "id": "toolu_01CFL8T959dcrfGHUWJuenin",
                        "name": "Bash",
                        "input": {"command": "ls *.py", "description": "List Python files"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "tool_use_id": "toolu_01CFL8T959dcrfGHUWJuenin",
                        "type": "tool_result",
                        "content": "main.py\nutil.py",
                        "is_error": False,
                        "cache_control": {"type": "ephemeral"},
                    }
                ],
            },
        ],
    }
    cc_side = {  # the topic/title request: tools [], the reply prefilled with "{"
        "model": model,
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
            {
                "type": "text",
                "text": 'Analyze if this message starts a new topic. Reply as JSON: {"isNewTopic": bool}',
            },
        ],
        "tools": [],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Use warm colors for our doc site"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "{"}]},
        ],
    }
    cc_source = (
        "code.claude.com/docs/en/llm-gateway (gateway contract, headers); mitm captures of claude-cli 2.1.x "
        "(chief-builder/claude-code-analytics "
        "docs/session-layout-optimization_full_details_with_mitm_detailed.md, "
        "starbased-co/ccproxy examples/cc-api-req.zsh)"
    )
    opencode_first = {
        "model": model,
        "max_tokens": 32000,
        "temperature": 0.55,
        "top_p": 1,
        "messages": [*OPENCODE_SYSTEM, {"role": "user", "content": ASK}],
        "tools": OPENCODE_TOOLS,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    opencode_result = {
        **opencode_first,
        "messages": [
            *OPENCODE_SYSTEM,
            {"role": "user", "content": ASK},
            {
                "role": "assistant",
                "content": "",
                "reasoning_content": "The user wants the python files.",
                "tool_calls": [
                    {
                        "id": "call_0_a1b2",
                        "type": "function",
                        "function": {
                            "name": "bash",
                            "arguments": '{"command":"ls *.py","description":"List Python files"}',
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_0_a1b2", "content": "main.py\nutil.py\n"},
        ],
    }
    opencode_source = (
        "anomalyco/opencode packages/opencode/src/session/llm.ts, provider/transform.ts; vercel/ai "
        "packages/openai-compatible/src/chat/openai-compatible-chat-language-model.ts, "
        "convert-to-openai-compatible-chat-messages.ts"
    )
    opencode_anthropic = {
        "model": model,
        "max_tokens": 32000,
        "system": [
            {
                "type": "text",
                "text": "You are opencode, an interactive CLI tool.",
                "cache_control": {"type": "ephemeral"},
            },
            {
                "type": "text",
                "text": "<env>Working directory: /home/u/proj</env>",
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": ASK}]},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_01A",
                        "name": "bash",
                        "input": {"command": "ls *.py", "description": "List Python files"},
                        "cache_control": {"type": "ephemeral"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01A",
                        "content": "main.py\nutil.py\n",
                        "cache_control": {"type": "ephemeral"},
                    }
                ],
            },
        ],
        "tools": [
            {
                "name": "bash",
                "description": "Executes a bash command.",
                "input_schema": {
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object",
                    "properties": {"command": {"type": "string"}, "description": {"type": "string"}},
                    "required": ["command"],
                    "additionalProperties": False,
                },
            }
        ],
        "stream": True,
    }
    continue_result = {
        "messages": [
            {"role": "system", "content": "<important_rules>Always cite file paths.</important_rules>"},
            {"role": "user", "content": "what does util.py do?"},
            {
                "role": "assistant",
                "content": " ",  # Continue sends a space where the content is empty
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "read_file", "arguments": '{"filepath":"util.py"}'},
                    }
                ],
            },
            {"role": "tool", "content": "def add(a, b):\n    return a + b\n", "tool_call_id": "call_1"},
        ],
        "model": model,
        "max_tokens": 4096,
        "stream": True,
        "tools": CONTINUE_TOOLS,
        "stream_options": {"include_usage": True},
    }
    continue_source = (
        "continuedev/continue core/llm/openaiTypeConverters.ts, packages/openai-adapters/src/apis/OpenAI.ts"
    )
    aider = {
        "model": model,
        "messages": [
            {
                "role": "system",
                "content": "Act as an expert software developer. Reply with *SEARCH/REPLACE* blocks.",
            },
            {"role": "user", "content": "I added these files to the chat: app.py"},
            {"role": "assistant", "content": "Ok."},
            {"role": "user", "content": "rename add() to sum_two()"},
        ],
        "stream": True,
        "temperature": 0,
        "reasoning_effort": "medium",  # extra_body.reasoning_effort, merged top level by the SDK
    }
    aider_source = "Aider-AI/aider aider/models.py Model.send_completion (through litellm and the OpenAI SDK)"
    cline_result = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are Cline, a highly skilled software engineer."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<task>\nlist the python files\n</task>"},
                    {
                        "type": "text",
                        "text": "<environment_details>\n# Current Working Directory: /home/u/proj\n"
                        "</environment_details>",
                    },
                ],
            },
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {
                            "name": "execute_command",
                            "arguments": '{"command":"ls *.py","requires_approval":false}',
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "main.py\nutil.py"},
        ],
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": CLINE_TOOLS,
        "tool_choice": "auto",
        "parallel_tool_calls": False,
    }
    cline_anthropic = {  # native tools on, thinking off: Cline forces a tool ("any")
        "model": model,
        "max_tokens": 8192,
        "temperature": 0,
        "system": [
            {
                "type": "text",
                "text": "You are Cline, a highly skilled software engineer.",
                "cache_control": {"type": "ephemeral"},
            }
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": "<task>\nlist the python files\n</task>",
                        "cache_control": {"type": "ephemeral"},
                    }
                ],
            }
        ],
        "tools": [
            {
                "name": "execute_command",
                "description": "Request to execute a CLI command on the system.",
                "input_schema": CLINE_TOOLS[0]["function"]["parameters"],
            }
        ],
        "tool_choice": {"type": "any"},
        "stream": True,
    }
    cline_source = (
        "cline/cline src/core/api/providers/openai.ts, src/core/api/transform/tool-call-processor.ts, "
        "src/core/api/providers/anthropic.ts"
    )
    roo = {
        "model": model,
        "temperature": 0,
        "messages": [
            {
                "role": "system",
                "content": [
                    {
                        "type": "text",
                        "text": "You are Roo, a highly skilled software engineer.",
                        "cache_control": {"type": "ephemeral"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<task>\nlist the python files\n</task>"},
                    {
                        "type": "text",
                        "text": "<environment_details>cwd /home/u/proj</environment_details>",
                        "cache_control": {"type": "ephemeral"},
                    },
                ],
            },
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_completion_tokens": 16384,
    }
    roo_source = (
        "RooCodeInc/Roo-Code src/api/providers/openai.ts (OpenAiHandler.createMessage), "
        "src/api/providers/constants.ts"
    )
    return [
        Shape("claude-code", "first-turn", "messages", cc_source, cc_first, CC_HEADERS, tuple(CC_BETAS)),
        Shape(
            "claude-code", "tool-result", "messages", cc_source, cc_tool_result, CC_HEADERS, tuple(CC_BETAS)
        ),
        Shape(
            "claude-code",
            "side-request-prefill",
            "messages",
            cc_source,
            cc_side,
            CC_HEADERS,
            ("claude-code-20250219",),
        ),
        Shape(
            "claude-code",
            "count-tokens",
            "count_tokens",
            cc_source,
            {k: cc_first[k] for k in ("model", "system", "tools", "messages")},
            CC_HEADERS,
            ("token-counting-2024-11-01",),
        ),
        Shape(
            "opencode",
            "first-turn",
            "chat",
            opencode_source,
            opencode_first,
            {"user-agent": "opencode/1.0.0"},
        ),
        Shape(
            "opencode",
            "tool-result",
            "chat",
            opencode_source,
            opencode_result,
            {"user-agent": "opencode/1.0.0"},
        ),
        Shape(
            "opencode",
            "anthropic-tool-result",
            "messages",
            opencode_source + "; vercel/ai packages/anthropic",
            opencode_anthropic,
            {"anthropic-beta": "fine-grained-tool-streaming-2025-05-14"},
        ),
        Shape("continue", "tool-result", "chat", continue_source, continue_result),
        Shape(
            "continue",
            "legacy-completions",
            "completions",
            continue_source,
            {
                "model": model,
                "prompt": "def fibonacci(n):",
                "max_tokens": 64,
                "temperature": 0.2,
                "stop": ["\n\n"],
                "stream": True,
            },
        ),
        Shape("aider", "edit-turn", "chat", aider_source, aider),
        Shape("cline", "tool-result", "chat", cline_source, cline_result),
        Shape("cline", "anthropic-first-turn", "messages", cline_source, cline_anthropic),
        Shape(
            "roo-code",
            "first-turn-prompt-cache",
            "chat",
            roo_source,
            roo,
            {"HTTP-Referer": "https://github.com/RooVetGit/Roo-Cline", "X-Title": "Roo Code"},
        ),
    ]
