"""Fine-tune tab: pick a base model, JSONL data and the trainer's settings (or a fine-tuning spec),
start and stop the same run as `workbench finetune`, watch its loss plot as it trains, then open the
tuned variant against its base in the Arena. Knows Gradio and workbench.tune."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from workbench.arena.battles import prompt_set_files
from workbench.bench.spec import BenchSpecError, experiments_dir, spec_files
from workbench.config import Settings
from workbench.engine import Engine, TuneReport
from workbench.reports import plots
from workbench.tune import FinetuneRun, FinetuneSpec, run_finetune
from workbench.ui.common import SessionCancels, engine_event, model_choices, user_errors

CUSTOM = "(settings below)"
REFRESH_S = 1.0  # how often the page gets the losses so far
# spec field -> (label, default, precision) of the number boxes, in their order on the page.
NUMBERS = {
    "iterations": ("Steps", 100, 0),
    "batch_size": ("Batch size", 4, 0),
    "learning_rate": ("Learning rate", 1e-4, None),
    "rank": ("Rank", 8, 0),
    "layers": ("Layers (from the last; -1 all)", 8, 0),
    "max_seq_length": ("Max sequence length", 512, 0),
    "val_interval": ("Validate every", 20, 0),
    "seed": ("Seed", 0, 0),
}
TEXTS = ("name", "base_model", "train", "valid", "method", "arena_prompts")


def data_files() -> list[str]:
    """JSONL files under experiments/, as paths relative to it (a spec's data paths)."""
    folder = experiments_dir()
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.jsonl")) if folder.is_dir() else []


def load_spec(choice: str) -> list[Any]:
    """The form's fields (TEXTS, then NUMBERS) from a fine-tuning spec in experiments/."""
    if choice == CUSTOM:
        return [gr.update() for _ in range(len(TEXTS) + len(NUMBERS))]
    try:
        spec = FinetuneSpec.from_file(experiments_dir() / choice)
    except BenchSpecError as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    return [getattr(spec, key) for key in (*TEXTS, *NUMBERS)]


def read_form(values: tuple[Any, ...]) -> FinetuneSpec:
    """The spec the form describes (data paths relative to experiments/); gr.Error if not one."""
    fields = dict(zip((*TEXTS, *NUMBERS), values, strict=True))
    if not fields["base_model"]:
        raise gr.Error("Pick a base model.", print_exception=False)
    if not fields["train"]:
        raise gr.Error("Pick the training data (a JSONL file).", print_exception=False)
    for key, (label, _, precision) in NUMBERS.items():
        if fields[key] is None:
            raise gr.Error(f"{label}: a number is needed.", print_exception=False)
        fields[key] = int(fields[key]) if precision == 0 else float(fields[key])
    fields = {k: v.strip() if isinstance(v, str) else v for k, v in fields.items()}
    try:
        spec = FinetuneSpec(**fields, folder=str(experiments_dir()))
        spec.data()  # the data files are read and checked before anything waits for the engine
    except BenchSpecError as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    return spec


def live_status(spec: FinetuneSpec, seen: list[TuneReport]) -> str:
    """One line: the step, the last training and validation losses, speed and memory."""
    train = [r for r in seen if r.kind == "train"]
    valid = [r for r in seen if r.kind == "valid"]
    if not train and not valid:
        return f"**{spec.name}**: waiting for the engine, then loading `{spec.base_model}`…"
    parts = [f"**Training `{spec.base_model}+{spec.name}`**: step {train[-1].iteration if train else 0}"]
    parts[0] += f"/{spec.iterations}"
    if train:
        t = train[-1]
        parts += [f"train loss {t.loss:.3f}", f"{t.iterations_per_second:.2f} steps/s"]
        parts += [f"{t.tokens_per_second:.0f} tok/s", f"peak {t.peak_memory_gb:.2f} GB"]
    if valid:
        parts.append(f"validation loss {valid[-1].loss:.3f} (step {valid[-1].iteration})")
    return " · ".join(parts)


def loss_figure(spec: FinetuneSpec, seen: list[TuneReport]) -> Any:
    """The loss plot of the reports so far (the notebooks' plots.loss_curves)."""
    if not seen:
        return None
    df = pd.DataFrame(
        {
            "experiment": spec.name,
            "variant": f"{spec.base_model}+{spec.name}",
            "run_id": "this run",
            "kind": [r.kind for r in seen],
            "iteration": [r.iteration for r in seen],
            "loss": [r.loss for r in seen],
        }
    )
    return plots.loss_curves(df)


def final_status(run: FinetuneRun) -> str:
    r = run.result
    first = f"{r.first_val_loss:.3f}" if r.first_val_loss is not None else "-"
    last = f"{r.last_val_loss:.3f}" if r.last_val_loss is not None else "-"
    how = f"stopped at step {r.iterations}: the weights so far are saved" if r.stopped else "finished"
    rate = r.iterations / max(r.train_s, 1e-9)
    return (
        f"Run `{run.run_id}` {how}. `{r.variant}`: {r.iterations} steps in {r.train_s:.0f} s "
        f"({rate:.2f} steps/s), validation loss {first} → {last}, peak {r.peak_memory_gb:.2f} GB; "
        f"{run.rows} rows in `{run.csv_path}`. It is in the Chat and Compare pickers; "
        "**Open in Arena** judges it against its base."
    )


@dataclass(frozen=True)
class TuneTab:
    """The Fine-tune tab's page-load handler and outputs, its "Open in Arena" button and
    the (base, variant, prompt set) of the last run it made, for the app to wire."""

    on_load: tuple[Any, list[Any]]
    open_arena: gr.Button
    made: gr.State


class TuneActions:
    """What the Fine-tune tab's events do: run a spec (cancelled by session hash) while
    the page gets its losses, stop it, fill the pickers on page load."""

    def __init__(self, engine: Engine, settings: Settings, pickers: int) -> None:
        self.engine, self.results, self.pickers = engine, settings.results_dir, pickers
        self.cancels = SessionCancels()

    async def do_run(  # one parameter per field: Gradio injects gr.Request only after positional ones
        self,
        name: str,
        base_model: str | None,
        train: str | None,
        valid: str | None,
        method: str,
        arena_prompts: str | None,
        iterations: float | None,
        batch_size: float | None,
        learning_rate: float | None,
        rank: float | None,
        layers: float | None,
        max_seq_length: float | None,
        val_interval: float | None,
        seed: float | None,
        request: gr.Request,
    ) -> AsyncIterator[list[Any]]:
        texts = (name, base_model, train or "", valid or "", method, arena_prompts or "")
        spec = read_form(
            (*texts, iterations, batch_size, learning_rate, rank, layers, max_seq_length, val_interval, seed)
        )
        seen: list[TuneReport] = []
        reports: queue.SimpleQueue[TuneReport] = queue.SimpleQueue()
        skip = [gr.skip() for _ in range(self.pickers)]
        yield [live_status(spec, seen), None, gr.update(visible=False), gr.skip(), *skip]
        with self.cancels.track(request.session_hash if request else None) as (cancel,):
            job = asyncio.ensure_future(
                asyncio.to_thread(
                    run_finetune, self.engine, spec, self.results, on_report=reports.put, cancel=cancel
                )
            )
            while True:
                done, _ = await asyncio.wait({job}, timeout=REFRESH_S)
                fresh = [reports.get() for _ in range(reports.qsize())]
                if fresh:
                    seen += fresh
                    figure = await asyncio.to_thread(loss_figure, spec, seen)
                    yield [live_status(spec, seen), figure, gr.skip(), gr.skip(), *skip]
                if done:
                    break
            with user_errors():
                run = job.result()
                choices = model_choices(self.engine.models())
        made = (run.result.variant.split("+", 1)[0], run.result.variant, spec.arena_prompts)
        updates = [gr.update(choices=choices) for _ in range(self.pickers)]
        yield [final_status(run), gr.skip(), gr.update(visible=True), made, *updates]

    def do_stop(self, request: gr.Request) -> str:
        n = self.cancels.cancel(request.session_hash)
        return (
            "Stopping after the current step (the weights so far are kept)…" if n else "Nothing is running."
        )

    def on_load(self) -> list[Any]:
        with user_errors():
            infos = self.engine.models()
        bases = [i for i in infos if i.source != "adapter"]
        return [
            gr.update(choices=[CUSTOM, *spec_files(kind="finetune")]),
            gr.update(choices=model_choices(bases), value=self.engine.default_model),
            gr.update(choices=data_files()),
            gr.update(choices=data_files()),
            gr.update(choices=prompt_set_files()),
        ]


def build_tune_tab(engine: Engine, settings: Settings, pickers: list[gr.Dropdown]) -> TuneTab:
    """Widgets and events of the Fine-tune tab (call inside a gr.Tab). `pickers` (Chat,
    Compare) get the tuned variant when a run ends."""
    act = TuneActions(engine, settings, len(pickers))
    with gr.Row():
        experiment = gr.Dropdown([CUSTOM], value=CUSTOM, label="Fine-tuning spec", elem_id="tune-spec")
        name = gr.Textbox("ui_tune", label="Name (variant <base>+<name>)", elem_id="tune-name")
        base = gr.Dropdown([], label="Base model", allow_custom_value=True, elem_id="tune-base")
    with gr.Row():
        data = {
            "train": "Training data (JSONL in experiments/, or a path)",
            "valid": "Validation data (empty: hold out 20% of the training data)",
        }
        train, valid = (
            gr.Dropdown([], label=label, allow_custom_value=True, elem_id=f"tune-{key}")
            for key, label in data.items()
        )
        method = gr.Radio(["lora", "dora"], value="lora", label="Method", elem_id="tune-method")
        prompts = gr.Dropdown(
            [], label="Arena prompt set (for Open in Arena)", allow_custom_value=True, elem_id="tune-prompts"
        )
    with gr.Row():
        numbers = [
            gr.Number(default, precision=precision, label=label, elem_id=f"tune-{key.replace('_', '-')}")
            for key, (label, default, precision) in NUMBERS.items()
        ]
    with gr.Row():
        run = gr.Button("Start training", variant="primary", elem_id="tune-run")
        stop = gr.Button("Stop", elem_id="tune-stop")
        open_arena = gr.Button("Open in Arena: tuned vs base", visible=False, elem_id="tune-open-arena")
    status = gr.Markdown(elem_id="tune-status")
    plot = gr.Plot(label="Loss", elem_id="tune-plot")
    made = gr.State(None)
    fields = [name, base, train, valid, method, prompts, *numbers]

    experiment.change(load_spec, [experiment], fields, api_visibility="private")
    run.click(
        act.do_run,
        fields,
        [status, plot, open_arena, made, *pickers],
        **engine_event(api_visibility="private"),
    )
    stop.click(act.do_stop, None, [status], api_visibility="private", concurrency_limit=None)
    return TuneTab((act.on_load, [experiment, base, train, valid, prompts]), open_arena, made)
