"""`workbench arena run|stats`: a prompt set through 2..N models into a battle file for blind
judging (the UI's Arena tab), and the statistics of a vote file. Parses flags, calls arena."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.cli._common import INTERRUPTED, run_cancellable
from workbench.engine import Engine

STATS_HELP = (
    "Per pair: win rate with a Wilson interval (ties and 'both bad' excluded unless --ties split), "
    "an exact two-sided sign test and a stopping hint; per model: Bradley-Terry rating (Elo scale) "
    "with a bootstrap interval, median decode tok/s and peak memory over the judged replies."
)


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    arena = sub.add_parser(
        "arena",
        help="A/B arena: run a prompt set through several models, then vote statistics",
        description="Blind A/B battles on your own prompts. `arena run` generates the replies; judge "
        "them in the UI's Arena tab (keys A, B, T, X); `arena stats` gives the verdict.",
    )
    verbs = arena.add_subparsers(dest="arena_command", required=True, metavar="VERB")
    run = verbs.add_parser(
        "run",
        parents=[common],
        help="generate every prompt with every model into results/<name>.battles.csv",
        description="Every prompt of PROMPTS (experiments/<name>.txt: one prompt per line, '#' lines "
        'skipped; or .jsonl: {"prompt", "system", "id"} per line) is answered by every --model '
        "with the same sampling and seed (--seed + the prompt's index), each model alone on the "
        "engine. One battle per prompt and pair of models, the shown positions drawn at random "
        "and recorded, lands in results/<name>.battles.csv (spec in <name>.battles.json). Then "
        "judge them blind in the UI's Arena tab.",
    )
    run.add_argument("prompts", help="prompt set: experiments/<name> or a path to a .txt / .jsonl file")
    run.add_argument("-m", "--model", action="append", default=[], help="a model id (give 2 or more)")
    run.add_argument("--name", help="battle set name (default: the prompt file's stem)")
    run.add_argument("--max-tokens", type=int, default=256)
    run.add_argument("--temperature", type=float, default=0.7, help="0 = greedy (default 0.7)")
    run.add_argument("--top-p", type=float, default=1.0)
    run.add_argument("--top-k", type=int, default=0)
    run.add_argument("--min-p", type=float, default=0.0)
    run.add_argument("--seed", type=int, default=0, help="seed of the first prompt; prompt i gets seed+i")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(handler=cmd_arena_run, needs_engine=True)
    stats = verbs.add_parser(
        "stats",
        help="win rates, sign tests, Bradley-Terry ratings and speed of a vote file",
        description=f"Statistics of a vote file: results/<name>.votes.csv (arena) or results/votes.csv "
        f"(the Compare tab's blind votes). {STATS_HELP} Writes <votes>.png beside the file.",
    )
    stats.add_argument("votes", help="a vote CSV")
    stats.add_argument("--ties", choices=("exclude", "split"), default="exclude")
    stats.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    stats.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    stats.add_argument("--plot", help="where to write the plot (default: beside the votes, .png)")
    stats.set_defaults(handler=cmd_arena_stats, needs_engine=False)


def cmd_arena_run(args: argparse.Namespace, engine: Engine) -> int:
    from workbench.arena.battles import ArenaSpec, find_prompt_set, read_prompt_set, run_battles
    from workbench.engine import SamplingParams

    path = find_prompt_set(args.prompts)
    prompts = read_prompt_set(path)
    sampling = SamplingParams(
        temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, min_p=args.min_p
    )
    spec = ArenaSpec(
        name=args.name or path.stem,
        models=tuple(args.model),
        sampling=sampling,
        max_tokens=args.max_tokens,
        seed=args.seed,
    )
    run = run_cancellable(
        lambda cancel, progress: run_battles(
            engine,
            spec,
            prompts,
            engine.settings.results_dir,
            prompt_file=path,
            on_progress=progress,
            cancel=cancel,
        ),
        desc=spec.name,
        unit="reply",
        no_progress=args.no_progress,
        interrupted="no battles written",
    )
    if run is None:
        return INTERRUPTED
    print(
        f"{run.battles} battles ({len(prompts)} prompts x {len(spec.models)} models) in {run.battles_path} "
        f"(run {run.run_id}); judge them in the UI's Arena tab, then: workbench arena stats {run.votes_path}",
        file=sys.stderr,
    )
    print(run.battles_path)
    return 0


def cmd_arena_stats(args: argparse.Namespace) -> int:
    """Reads files only: no engine."""
    import pandas as pd

    from workbench.arena.stats import arena_stats, read_votes
    from workbench.reports.plots import arena_plot

    if args.bootstrap < 0:
        raise ValueError("--bootstrap must be >= 0")
    path = Path(args.votes)
    result = arena_stats(read_votes(path), ties=args.ties, bootstrap=args.bootstrap, seed=args.seed)
    with pd.option_context("display.width", 220, "display.max_columns", None, "display.max_colwidth", 90):
        print(result.caption())
        print()
        print(result.models.round(2).to_string(index=False))
        print()
        pairs = result.pairs.drop(columns=["hint"]).round(3)
        print(pairs.to_string(index=False))
        print()
        for row in result.pairs.itertuples():
            print(f"{row.model_x} vs {row.model_y}: {row.hint}")
    out = Path(args.plot) if args.plot else path.with_suffix(".png")
    arena_plot(result.models, result.pairs, result.caption()).savefig(out, dpi=110)
    print(f"plot: {out}", file=sys.stderr)
    return 0
