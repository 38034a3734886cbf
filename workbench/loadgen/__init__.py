"""HTTP load clients (concurrent streams, multi-turn conversations, client overhead) that work
against any OpenAI-compatible server, ours or mlx_lm.server; rows through workbench.reports."""
