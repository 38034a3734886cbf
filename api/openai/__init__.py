"""The OpenAI-compatible API: chat and text completions and the model list under /v1.

Imports api/wire.py for what it shares with api/anthropic, never api/anthropic itself.
"""
