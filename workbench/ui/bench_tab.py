"""Benchmark tab: pick models and lengths (or an experiments/ file), run the same runner as
`workbench bench` with a progress bar, see the summary and plots, download the CSV. No HTTP."""

from __future__ import annotations

import re
from typing import Any

import gradio as gr

from workbench.bench.runner import default_csv_path, run_to_csv
from workbench.bench.spec import BenchSpec, BenchSpecError, experiments_dir, spec_files
from workbench.config import Settings
from workbench.engine import Engine
from workbench.reports import plots
from workbench.reports.store import read_results
from workbench.reports.summary import MIN_TRIALS_FOR_CI, format_summary, summarize
from workbench.ui.common import SessionCancels, engine_event, model_choices, user_errors

CUSTOM = "(settings below)"


def parse_lengths(text: str, what: str) -> tuple[int, ...]:
    """'16, 64 128' -> (16, 64, 128); anything else is a readable error."""
    parts = [p for p in re.split(r"[,\s]+", text or "") if p]
    if not parts or not all(p.isdigit() for p in parts):
        raise gr.Error(f"{what}: give whole numbers of tokens, e.g. 16, 64", print_exception=False)
    return tuple(int(p) for p in parts)


def build_bench_tab(engine: Engine, settings: Settings) -> tuple[Any, list[Any]]:
    """Widgets and events of the Benchmark tab (call inside a gr.Tab). Returns the
    page-load handler and its outputs."""
    cancels = SessionCancels()
    with gr.Row():
        experiment = gr.Dropdown([CUSTOM], value=CUSTOM, label="Experiment file", elem_id="bench-experiment")
        name = gr.Textbox("ui", label="Name (results/<name>.csv)", elem_id="bench-name")
    question = gr.Textbox(label="Question it asks", elem_id="bench-question")
    models = gr.Dropdown(
        choices=[], multiselect=True, label="Models (each variant is its own id)", elem_id="bench-models"
    )
    with gr.Row():
        prompts = gr.Textbox("16, 64", label="Prompt lengths (tokens)", elem_id="bench-prompts")
        gens = gr.Textbox("8, 32", label="Generation lengths (tokens)", elem_id="bench-gens")
        trials = gr.Number(3, precision=0, minimum=1, label="Trials", elem_id="bench-trials")
        warmup = gr.Number(1, precision=0, minimum=0, label="Warm-up", elem_id="bench-warmup")
        seed = gr.Number(0, precision=0, minimum=0, label="Seed", elem_id="bench-seed")
    with gr.Row():
        run = gr.Button("Run benchmark", variant="primary", elem_id="bench-run")
        stop = gr.Button("Stop", elem_id="bench-stop")
    status = gr.Markdown(elem_id="bench-status")
    table = gr.Dataframe(interactive=False, wrap=True, label="Summary", elem_id="bench-summary")
    figures = [gr.Plot(label=name, elem_id=f"bench-plot-{i}") for i, name in enumerate(plots.REPORT_PLOTS)]
    csv_file = gr.File(label="CSV (one row per trial, with provenance)", elem_id="bench-csv")
    fields = [name, question, models, prompts, gens, trials, warmup, seed]

    def load_experiment(choice: str) -> list[Any]:
        if choice == CUSTOM:
            return [gr.update() for _ in fields]
        try:
            spec = BenchSpec.from_file(experiments_dir() / choice)
        except BenchSpecError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        p, g = (", ".join(map(str, v)) for v in (spec.prompt_tokens, spec.generation_tokens))
        return [spec.name, spec.question, list(spec.models), p, g, spec.trials, spec.warmup, spec.seed]

    def do_run(  # one parameter per field: Gradio injects gr.Request only after positional ones
        name_: str,
        question_: str,
        models_: list[str],
        prompts_: str,
        gens_: str,
        trials_: float | None,
        warmup_: float | None,
        seed_: float | None,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> list[Any]:
        if not models_:
            raise gr.Error("Pick at least one model.", print_exception=False)
        try:
            spec = BenchSpec(
                name=(name_ or "").strip(),
                question=question_ or "",
                models=tuple(models_),
                prompt_tokens=parse_lengths(prompts_, "Prompt lengths"),
                generation_tokens=parse_lengths(gens_, "Generation lengths"),
                trials=int(trials_ if trials_ is not None else 0),
                warmup=int(warmup_ if warmup_ is not None else -1),
                seed=int(seed_ if seed_ is not None else -1),
            )
        except BenchSpecError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        progress((0, spec.total_trials), desc="waiting for the engine", unit="trials")

        def step(done: int, total: int, what: str) -> None:
            progress((done, total), desc=what, unit="trials")

        with user_errors(), cancels.track(request.session_hash) as (cancel,):
            result = run_to_csv(
                engine, spec, default_csv_path(settings.results_dir, spec), on_progress=step, cancel=cancel
            )
        df = read_results(result.csv_path)
        df = df[df["run_id"] == result.run_id]
        what = "finished" if result.complete else "stopped (the completed trials are kept)"
        note = "" if spec.trials >= MIN_TRIALS_FOR_CI else f"; 95% CIs need {MIN_TRIALS_FOR_CI}+ trials"
        message = (
            f"Run `{result.run_id}` {what}: {len(df)} rows in `{result.csv_path}` "
            f"(device {engine.device}, BLAS {engine.blas}). Medians per configuration{note}."
        )
        if df.empty:
            return [message, None, *[None for _ in figures], str(result.csv_path)]
        summary = format_summary(summarize(df))
        return [message, summary, *[plot(df) for plot in plots.REPORT_PLOTS.values()], str(result.csv_path)]

    def do_stop(request: gr.Request) -> str:
        n = cancels.cancel(request.session_hash)
        return "Stopping after the current token…" if n else "Nothing is running."

    def on_load() -> list[Any]:
        files = spec_files()
        with user_errors():
            infos = engine.models()
        default = engine.default_model
        return [gr.update(choices=[CUSTOM, *files]), gr.update(choices=model_choices(infos), value=[default])]

    experiment.change(load_experiment, [experiment], fields, api_visibility="private")
    run.click(
        do_run,
        fields,
        [status, table, *figures, csv_file],
        **engine_event(api_visibility="private", show_progress="full"),
    )
    stop.click(do_stop, None, [status], api_visibility="private", concurrency_limit=None)
    return on_load, [experiment, models]
