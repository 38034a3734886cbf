"""Anthropic's Messages API: /v1/messages and /v1/messages/count_tokens.

Imports api/wire.py for what it shares with api/openai, never api/openai itself.
"""
