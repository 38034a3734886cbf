"""Quantize tab: pick a model and recipes (or a sweep file), run the same sweep as `workbench
quantize --sweep`, see its table and Pareto plot, download the CSV. Knows Gradio and quant."""

from __future__ import annotations

from typing import Any

import gradio as gr

from workbench.bench.spec import BenchSpecError, experiments_dir, spec_files
from workbench.config import Settings
from workbench.engine import RECIPE_HELP, Engine
from workbench.quant import QuantSweepSpec, run_sweep
from workbench.quant.sweep import default_csv_path
from workbench.reports import plots
from workbench.reports.schema import QUANT_COLUMNS, QUANT_SUMMARY_FIELDS
from workbench.reports.store import read_results
from workbench.ui.common import SessionCancels, engine_event, model_choices, user_errors

CUSTOM = "(settings below)"
COMMON_RECIPES = ["q8", "q6", "q5", "q4", "q4-g32", "q3", "q2", "mixed_3_6", "mixed_4_6", "mxfp4"]
# spec field -> (label, default) of the number boxes, in their order on the page.
NUMBERS = {
    "eval_tokens": ("Evaluation tokens", 128),
    "window": ("Window", 64),
    "divergence_prompts": ("Divergence prompts", 2),
    "divergence_tokens": ("Divergence tokens", 8),
    "prompt_tokens": ("Speed: prompt tokens", 32),
    "generation_tokens": ("Speed: generated tokens", 8),
    "trials": ("Speed trials", 2),
    "warmup": ("Warm-up", 1),
    "seed": ("Seed", 0),
}


def load_experiment(choice: str) -> list[Any]:
    """The form's fields (name, question, model, recipes, the numbers) from a sweep file."""
    if choice == CUSTOM:
        return [gr.update() for _ in range(4 + len(NUMBERS))]
    try:
        spec = QuantSweepSpec.from_file(experiments_dir() / choice)
    except BenchSpecError as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    head = [spec.name, spec.question, spec.model, list(spec.recipes)]
    return [*head, *(getattr(spec, key) for key in NUMBERS)]


def build_quant_tab(engine: Engine, settings: Settings, pickers: list[gr.Dropdown]) -> tuple[Any, list[Any]]:
    """Widgets and events of the Quantize tab (call inside a gr.Tab). `pickers` (Chat,
    Compare) get the new variants when a run ends. Returns the page-load handler and outputs."""
    cancels = SessionCancels()
    with gr.Row():
        experiment = gr.Dropdown([CUSTOM], value=CUSTOM, label="Sweep file", elem_id="quant-experiment")
        name = gr.Textbox("ui_quant", label="Name (results/<name>.csv)", elem_id="quant-name")
    question = gr.Textbox(label="Question it asks", elem_id="quant-question")
    with gr.Row():
        model = gr.Dropdown(choices=[], label="Model to quantize (a float variant)", elem_id="quant-model")
        recipes = gr.Dropdown(
            COMMON_RECIPES,
            value=["q8", "q4", "q2"],
            multiselect=True,
            allow_custom_value=True,
            label="Recipes",
            info=RECIPE_HELP,
            elem_id="quant-recipes",
        )
    with gr.Row():
        numbers = [
            gr.Number(default, precision=0, minimum=0, label=label, elem_id=f"quant-{key.replace('_', '-')}")
            for key, (label, default) in NUMBERS.items()
        ]
    with gr.Row():
        run = gr.Button("Quantize and measure", variant="primary", elem_id="quant-run")
        stop = gr.Button("Stop", elem_id="quant-stop")
    status = gr.Markdown(elem_id="quant-status")
    table = gr.Dataframe(interactive=False, wrap=True, label="Variants", elem_id="quant-table")
    pareto = gr.Plot(label="Pareto: quality vs decode tok/s, area = peak memory", elem_id="quant-pareto")
    csv_file = gr.File(label="CSV (one row per variant, with provenance)", elem_id="quant-csv")
    fields = [name, question, model, recipes, *numbers]

    def do_run(  # one parameter per field: Gradio injects gr.Request only after positional ones
        name_: str,
        question_: str,
        model_: str | None,
        recipes_: list[str],
        eval_tokens: float | None,
        window: float | None,
        divergence_prompts: float | None,
        divergence_tokens: float | None,
        prompt_tokens: float | None,
        generation_tokens: float | None,
        trials: float | None,
        warmup: float | None,
        seed: float | None,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> list[Any]:
        values = (eval_tokens, window, divergence_prompts, divergence_tokens)
        values += (prompt_tokens, generation_tokens, trials, warmup, seed)
        if not model_:
            raise gr.Error("Pick a model to quantize.", print_exception=False)
        if not recipes_:
            raise gr.Error("Pick at least one recipe.", print_exception=False)
        numbers_ = {k: int(v) if v is not None else -1 for k, v in zip(NUMBERS, values, strict=True)}
        try:
            spec = QuantSweepSpec(
                name=(name_ or "").strip(),
                question=question_ or "",
                model=model_,
                recipes=tuple(recipes_),
                **numbers_,
            )
        except BenchSpecError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        progress((0, 1), desc="waiting for the engine", unit="steps")

        def step(done: int, total: int, what: str) -> None:
            progress((done, total), desc=what, unit="steps")

        with user_errors(), cancels.track(request.session_hash) as (cancel,):
            result = run_sweep(
                engine, spec, default_csv_path(settings.results_dir, spec), on_progress=step, cancel=cancel
            )
            choices = model_choices(engine.models())
        df = read_results(result.csv_path, QUANT_COLUMNS)
        df = df[df["run_id"] == result.run_id]
        what = "finished" if result.complete else "stopped (the measured variants are kept)"
        message = (
            f"Run `{result.run_id}` {what}: {len(df)} variants in `{result.csv_path}` "
            f"(device {engine.device}, BLAS {engine.blas}). The variants are in the Chat and Compare pickers."
        )
        updates = [gr.update(choices=choices) for _ in pickers]
        if df.empty:
            return [message, None, None, str(result.csv_path), *updates]
        shown = df[list(QUANT_SUMMARY_FIELDS)].round(4)
        return [message, shown, plots.quant_pareto(df), str(result.csv_path), *updates]

    def do_stop(request: gr.Request) -> str:
        n = cancels.cancel(request.session_hash)
        return "Stopping after the current step…" if n else "Nothing is running."

    def on_load() -> list[Any]:
        with user_errors():
            infos = engine.models()
        dense = [i for i in infos if i.bits is not None and i.bits >= 16]
        return [
            gr.update(choices=[CUSTOM, *spec_files(sweeps=True)]),
            gr.update(choices=model_choices(dense or infos), value=engine.default_model),
        ]

    experiment.change(load_experiment, [experiment], fields, api_visibility="private")
    run.click(
        do_run,
        fields,
        [status, table, pareto, csv_file, *pickers],
        **engine_event(api_visibility="private", show_progress="full"),
    )
    stop.click(do_stop, None, [status], api_visibility="private", concurrency_limit=None)
    return on_load, [experiment, model]
