"""Arena tab: run a prompt set through 2..N models into a battle file, then judge it blind (keys A,
B, T, X) and watch the statistics form. Models stay server-side until a vote; knows no HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from workbench.arena import stats
from workbench.arena.battles import (
    ArenaSpec,
    JudgeState,
    battle_files,
    find_prompt_set,
    judge_state,
    prompt_set_files,
    read_prompt_set,
    record_vote,
    run_battles,
)
from workbench.arena.stats import arena_stats, read_votes
from workbench.bench.spec import experiments_dir
from workbench.config import Settings
from workbench.engine import Engine, SamplingParams
from workbench.reports.plots import arena_plot
from workbench.ui.common import SessionCancels, engine_event, model_choices, user_errors

VOTES = {"a": "A is better  [A]", "b": "B is better  [B]", "tie": "Tie  [T]", "both_bad": "Both bad  [X]"}
MODEL_COLUMNS = [
    "model",
    "rating",
    "rating_low",
    "rating_high",
    "battles",
    "wins",
    "losses",
    "ties",
    "median_tps",
    "median_peak_memory_gb",
]
PAIR_COLUMNS = [c for c in stats.PAIR_COLUMNS if c != "decided_after"]  # the hint says it
# Keyboard shortcuts for the vote buttons, on every page of the UI (mount_ui puts this in
# the page head): a key clicks its button only while the button is on screen and no text
# field has the focus.
KEYBOARD_JS = """
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  const target = event.target;
  const fields = ["INPUT", "TEXTAREA", "SELECT"];
  const typing = target && (target.isContentEditable || fields.includes(target.tagName));
  if (typing || !event.key) return;
  const keys = {a: "arena-vote-a", b: "arena-vote-b", t: "arena-vote-tie", x: "arena-vote-both_bad"};
  const id = keys[event.key.toLowerCase()];
  const button = id && document.getElementById(id);
  if (button && button.offsetParent !== null && !button.disabled) { event.preventDefault(); button.click(); }
});
"""


def _prompt_path(choice: str) -> Path:
    """A prompt set picked by name (from experiments/) or typed as a path."""
    named = experiments_dir() / choice
    return named if (named.exists() or named.with_suffix(".txt").exists()) else Path(choice).expanduser()


JUDGE_OUTPUTS = 6  # progress, prompt, output A, output B, the vote row, the battle on screen
STATS_OUTPUTS = 4  # caption, models table, pairs table, plot


class ArenaActions:
    """What the Arena tab's events do: open a battle set, record a vote, run and stop a
    battle set (cancelled by session hash), fill the pickers on page load."""

    def __init__(self, engine: Engine, results: Path) -> None:
        self.engine = engine
        self.results = results
        self.cancels = SessionCancels()

    @staticmethod
    def show(state: JudgeState) -> list[Any]:
        battle = state.battle
        if battle is None:
            done = "all judged: the statistics below are final" if state.total else "no battles in it"
            return [f"**{state.progress()}** · {done}", "", "", "", gr.update(visible=False), None]
        system = f"*System:* {battle['system_prompt']}\n\n" if battle["system_prompt"] else ""
        return [
            f"**{state.progress()}** · battle {battle['battle_id']} · keys: A, B, T (tie), X (both bad)",
            f"{system}**Prompt:** {battle['prompt']}",
            battle["output_a"] or "*(empty reply)*",
            battle["output_b"] or "*(empty reply)*",
            gr.update(visible=True),
            (str(state.battles_path), battle["battle_id"]),
        ]

    @staticmethod
    def statistics(state: JudgeState) -> list[Any]:
        if not state.votes_path.exists():
            hidden = gr.update(value=None, visible=False)
            return ["*No votes yet: the tables fill as you judge.*", hidden, hidden, hidden]
        result = arena_stats(read_votes(state.votes_path))
        hints = "".join(f"\n- {r.model_x} vs {r.model_y}: {r.hint}" for r in result.pairs.itertuples())
        return [
            result.caption() + "\n" + hints,
            gr.update(value=result.models[MODEL_COLUMNS].round(3), visible=True),
            gr.update(value=result.pairs[PAIR_COLUMNS].round(3), visible=True),
            gr.update(value=arena_plot(result.models, result.pairs, result.caption()), visible=True),
        ]

    def open_set(self, choice: str | None) -> list[Any]:
        if not choice:
            return [gr.update() for _ in range(JUDGE_OUTPUTS + STATS_OUTPUTS)]
        with user_errors():
            state = judge_state(self.results / choice)
            return [*self.show(state), *self.statistics(state)]

    def vote(self, verdict: str, on_screen: tuple[str, str] | None) -> list[Any]:
        if on_screen is None:
            raise gr.Error("Pick a battle set with battles left to judge.", print_exception=False)
        with user_errors():
            row, state = record_vote(on_screen[0], on_screen[1], verdict)
            said = {"a": "A", "b": "B", "tie": "a tie", "both_bad": "both bad"}[verdict]
            told = (
                f"Battle {row['battle_id']}: you said **{said}**. A was `{row['model_a']}`, "
                f"B was `{row['model_b']}`."
            )
            return [told, *self.show(state), *self.statistics(state)]

    def do_run(
        self,
        prompts_: str | None,
        name_: str,
        models_: list[str] | None,
        temperature_: float,
        max_tokens_: float | None,
        seed_: float | None,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> list[Any]:
        if not prompts_:
            raise gr.Error("Pick a prompt set.", print_exception=False)
        with user_errors():
            path = find_prompt_set(_prompt_path(prompts_))
            items = read_prompt_set(path)
            spec = ArenaSpec(
                name=(name_ or "").strip() or path.stem,
                models=tuple(models_ or ()),
                sampling=SamplingParams(temperature=float(temperature_)),
                max_tokens=int(max_tokens_) if max_tokens_ is not None else 0,
                seed=int(seed_) if seed_ is not None else -1,
            )
        progress((0, 1), desc="waiting for the engine", unit="replies")

        def step(done: int, total: int, what: str) -> None:
            progress((done, total), desc=what, unit="replies")

        with user_errors(), self.cancels.track(request.session_hash) as (cancel,):
            result = run_battles(
                self.engine, spec, items, self.results, prompt_file=path, on_progress=step, cancel=cancel
            )
        if not result.complete:
            return ["Stopped: no battles written.", gr.update()]
        message = (
            f"{result.battles} battles in `{result.battles_path}` (run `{result.run_id}`): judge them below."
        )
        return [message, gr.update(choices=battle_files(self.results), value=result.battles_path.name)]

    def do_stop(self, request: gr.Request) -> str:
        n = self.cancels.cancel(request.session_hash)
        return "Stopping after the reply in flight…" if n else "Nothing is running."

    def on_load(self) -> list[Any]:
        with user_errors():
            infos = self.engine.models()
            default = self.engine.model_info(self.engine.default_model)
        # The default model and its closest sibling (the same weights in another variant).
        others = sorted(
            (m for m in infos if m.id != default.id),
            key=lambda m: (m.source != default.source, m.path != default.path),
        )
        return [
            gr.update(choices=prompt_set_files()),
            gr.update(choices=model_choices(infos), value=[default.id, *(m.id for m in others[:1])]),
            gr.update(choices=battle_files(self.results)),
        ]


@dataclass(frozen=True)
class ArenaTab:
    """The Arena tab's page-load handler and outputs, and the run form's widgets that
    other tabs fill (the Fine-tune tab's "Open in Arena")."""

    on_load: tuple[Any, list[Any]]
    run_box: gr.Accordion
    prompts: gr.Dropdown
    name: gr.Textbox
    models: gr.Dropdown


def build_arena_tab(engine: Engine, settings: Settings) -> ArenaTab:
    """Widgets and events of the Arena tab (call inside a gr.Tab)."""
    act = ArenaActions(engine, settings.results_dir)
    with gr.Accordion(
        "Run a battle set: every prompt, every model", open=False, elem_id="arena-run-box"
    ) as run_box:
        with gr.Row():
            prompts = gr.Dropdown(
                [],
                label="Prompt set (experiments/*.txt or .jsonl, or a path)",
                allow_custom_value=True,
                elem_id="arena-prompts",
            )
            name = gr.Textbox(label="Name (default: the prompt file's name)", elem_id="arena-name")
        models = gr.Dropdown(
            [], multiselect=True, allow_custom_value=True, label="Models (2 or more)", elem_id="arena-models"
        )
        with gr.Row():
            temperature = gr.Slider(
                0, 2, value=0.7, step=0.05, label="Temperature", elem_id="arena-temperature"
            )
            max_tokens = gr.Number(
                128, precision=0, minimum=1, label="Max tokens", elem_id="arena-max-tokens"
            )
            seed = gr.Number(
                0, precision=0, minimum=0, label="Seed (prompt i: seed + i)", elem_id="arena-seed"
            )
        with gr.Row():
            run = gr.Button("Run battles", variant="primary", elem_id="arena-run")
            stop = gr.Button("Stop", elem_id="arena-stop")
        run_status = gr.Markdown(elem_id="arena-run-status")
    with gr.Row():
        battle_set = gr.Dropdown([], label="Battle set to judge (results/*.battles.csv)", elem_id="arena-set")
        progress_md = gr.Markdown(elem_id="arena-progress")
    prompt_md = gr.Markdown(elem_id="arena-prompt")
    with gr.Row(equal_height=False):
        with gr.Column():
            gr.Markdown("#### A")
            output_a = gr.Markdown(min_height=100, container=True, elem_id="arena-output-a")
        with gr.Column():
            gr.Markdown("#### B")
            output_b = gr.Markdown(min_height=100, container=True, elem_id="arena-output-b")
    with gr.Row(visible=False) as vote_row:
        buttons = {v: gr.Button(label, elem_id=f"arena-vote-{v}") for v, label in VOTES.items()}
    reveal = gr.Markdown(elem_id="arena-reveal")
    caption = gr.Markdown(elem_id="arena-caption")
    model_table = gr.Dataframe(
        interactive=False, wrap=True, label="Models", visible=False, elem_id="arena-model-table"
    )
    pair_table = gr.Dataframe(
        interactive=False, wrap=True, label="Pairs", visible=False, elem_id="arena-pair-table"
    )
    plot = gr.Plot(label="Verdict and cost", show_label=False, visible=False, elem_id="arena-plot")
    current = gr.State(None)  # (battle file, battle id) on screen; models stay server-side
    judge_outputs = [progress_md, prompt_md, output_a, output_b, vote_row, current]
    stats_outputs = [caption, model_table, pair_table, plot]
    assert (len(judge_outputs), len(stats_outputs)) == (JUDGE_OUTPUTS, STATS_OUTPUTS)

    battle_set.change(act.open_set, [battle_set], judge_outputs + stats_outputs, api_visibility="private")
    for verdict, button in buttons.items():
        button.click(
            lambda on_screen, v=verdict: act.vote(v, on_screen),
            [current],
            [reveal, *judge_outputs, *stats_outputs],
            api_visibility="private",
            concurrency_limit=None,
        )
    run.click(
        act.do_run,
        [prompts, name, models, temperature, max_tokens, seed],
        [run_status, battle_set],
        **engine_event(api_visibility="private", show_progress="full"),
    )
    stop.click(act.do_stop, None, [run_status], api_visibility="private", concurrency_limit=None)

    return ArenaTab((act.on_load, [prompts, models, battle_set]), run_box, prompts, name, models)
