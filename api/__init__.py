"""The HTTP edge: an OpenAI-compatible API under /v1 on the shared Engine.

Built by `api.app.create_app`; imports workbench, never the reverse.
"""
