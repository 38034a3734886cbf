"""Memory through a model's load / generate / unload cycle, as rows for a DataFrame: what
loading costs, what a generation adds, whether unloading gives it back. Reads the Engine's
memory() figures; knows no mlx."""

from __future__ import annotations

from typing import Any

from workbench.bench.prompts import exact_prompt
from workbench.engine import Engine, GenerationRequest


def load_unload_memory(
    engine: Engine, model: str, *, prompt_tokens: int = 128, generation_tokens: int = 16
) -> list[dict[str, Any]]:
    """Rows (stage, model, active_gb, cache_gb, process_rss_gb, load_s) for:
    every model unloaded, `model` loaded, after one generation, after unloading it."""
    rows: list[dict[str, Any]] = []

    def snap(stage: str, load_s: float | None = None) -> None:
        mem = engine.memory()
        rows.append(
            {
                "stage": stage,
                "model": model,
                "active_gb": mem.active_gb,
                "cache_gb": mem.cache_gb,
                "process_rss_gb": mem.process_rss_gb,
                "load_s": load_s,
            }
        )

    with engine.exclusive(f"memory measurement of {model}"):
        model = engine.model_info(model).id
        for info in engine.models():
            if info.loaded:
                engine.unload(info.id)
        snap("nothing loaded")
        info = engine.load(model)
        snap("loaded", engine.model_info(model).load_s)
        ids = exact_prompt(engine, model, prompt_tokens)
        engine.generate(
            GenerationRequest(
                prompt_ids=tuple(ids), model=model, max_tokens=generation_tokens, ignore_eos=True, cache=False
            )
        )
        snap(f"after a {prompt_tokens}+{generation_tokens} token generation")
        engine.unload(info.id)
        snap("unloaded")
    return rows
