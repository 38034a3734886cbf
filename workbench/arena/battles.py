"""Arena battles: a prompt set run through 2..N models (each alone on the engine, fixed
sampling, a seed per prompt) into <name>.battles.csv for blind judging, and the votes on
them in <name>.votes.csv (columns in reports.schema). Knows Engine, runs, reports; no Gradio."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from workbench.arena.votes import PAIR_VERDICTS
from workbench.bench.runner import load_alone
from workbench.bench.spec import NAME, experiments_dir
from workbench.engine import CancelToken, Engine, GenerationRequest, GenerationStats, Message, SamplingParams
from workbench.reports.schema import (
    ARENA_VOTE_FIELDS,
    BATTLE_FIELDS,
    VOTE_SAMPLING_FIELDS,
    VOTE_STAT_FIELDS,
)
from workbench.reports.store import ResultsSchemaError, append_rows, read_rows
from workbench.runs import ProgressFn, RunRecord, now_utc, sidecar_path

PROMPT_SUFFIXES = (".txt", ".jsonl")
# A reply per (prompt index, model id): its text and stats.
Replies = dict[tuple[int, str], tuple[str, GenerationStats]]


class ArenaError(ValueError):
    """A prompt set, battle run or vote that cannot be used; the message says why."""


# ---- prompt sets --------------------------------------------------------------
@dataclass(frozen=True)
class ArenaPrompt:
    prompt: str
    system: str = ""
    id: str = ""


def read_prompt_set(path: str | Path) -> list[ArenaPrompt]:
    """Prompts from a .txt file (one per line; blank lines and lines starting with '#'
    skipped) or a .jsonl file (one per line: a JSON string, or an object with "prompt"
    and optional "system" and "id"). Errors name the file and line."""
    path = find_prompt_set(path)
    prompts: list[ArenaPrompt] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ArenaError(f"{path}: cannot read it ({exc})") from None
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or (path.suffix == ".txt" and text.startswith("#")):
            continue
        if path.suffix == ".txt":
            prompts.append(ArenaPrompt(text, id=str(number)))
            continue
        try:
            item = json.loads(text)
        except ValueError as exc:
            raise ArenaError(f"{path}, line {number}: not JSON ({exc})") from None
        if isinstance(item, str):
            item = {"prompt": item}
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("prompt"), str)
            or not item["prompt"].strip()
        ):
            raise ArenaError(
                f'{path}, line {number}: expected a string or {{"prompt": "...", "system": "..."}}'
            )
        unknown = sorted(set(item) - {"prompt", "system", "id"})
        if unknown:
            raise ArenaError(f"{path}, line {number}: unknown keys {unknown}; use prompt, system, id")
        system = item.get("system", "")
        if not isinstance(system, str):
            raise ArenaError(f"{path}, line {number}: system must be a string")
        prompts.append(ArenaPrompt(item["prompt"], system, str(item.get("id", number))))
    if not prompts:
        raise ArenaError(f"{path}: no prompts in it")
    return prompts


def find_prompt_set(path: str | Path) -> Path:
    """`experiments/<name>` (suffix optional) or any path to a .txt / .jsonl file."""
    path = Path(path)
    candidates = [path] if path.suffix else [path.with_suffix(s) for s in PROMPT_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            if candidate.suffix not in PROMPT_SUFFIXES:
                raise ArenaError(f"{candidate}: a prompt set is a .txt or .jsonl file")
            return candidate
    raise ArenaError(f"{path}: no such prompt set (.txt, one prompt per line, or .jsonl)")


def prompt_set_files() -> list[str]:
    """Prompt sets shipped in experiments/, by file name."""
    folder = experiments_dir()
    return sorted(p.name for p in folder.iterdir() if p.suffix in PROMPT_SUFFIXES) if folder.is_dir() else []


# ---- the run ----------------------------------------------------------------
@dataclass(frozen=True)
class ArenaSpec:
    """Which models answer the set, how: one seed per prompt (`seed` + its index), the
    same for every model, so replies differ by model, not by luck of the draw."""

    name: str
    models: tuple[str, ...]
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(temperature=0.7))
    max_tokens: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME.match(self.name):
            raise ArenaError(f"name: {self.name!r} is not a short name (letters, digits, _ . -)")
        models = tuple(m.strip() for m in self.models if m and m.strip())
        if len(models) < 2:
            raise ArenaError(f"an arena needs at least 2 models, got {list(models)}")
        object.__setattr__(self, "models", models)
        if not isinstance(self.max_tokens, int) or not 1 <= self.max_tokens <= 100_000:
            raise ArenaError(f"max_tokens must be an integer in [1, 100000], got {self.max_tokens!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**31:
            raise ArenaError(f"seed must be an integer in [0, 2**31), got {self.seed!r}")


@dataclass(frozen=True)
class BattleRun:
    battles_path: Path
    votes_path: Path
    run_id: str
    battles: int
    complete: bool


def battles_path(results_dir: Path, name: str) -> Path:
    return Path(results_dir) / f"{name}.battles.csv"


def votes_path_for(battles_csv: Path) -> Path:
    """<name>.battles.csv -> <name>.votes.csv, beside it."""
    battles_csv = Path(battles_csv)
    stem = battles_csv.name.removesuffix(".battles.csv")
    if stem == battles_csv.name:
        raise ArenaError(f"{battles_csv}: a battle file's name ends in .battles.csv")
    return battles_csv.with_name(f"{stem}.votes.csv")


def battle_files(results_dir: Path) -> list[str]:
    folder = Path(results_dir)
    return sorted(p.name for p in folder.glob("*.battles.csv")) if folder.is_dir() else []


def run_battles(
    engine: Engine,
    spec: ArenaSpec,
    prompts: Sequence[ArenaPrompt],
    results_dir: Path,
    *,
    prompt_file: str | Path | None = None,
    on_progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> BattleRun:
    """Generate every prompt with every model, then write one battle per prompt and pair
    with the shown positions drawn at random (unpredictably: SystemRandom). A cancelled
    run writes nothing to the battle file; its sidecar says stopped."""
    cancel = cancel or CancelToken()
    path = battles_path(results_dir, spec.name)
    if path.exists() and path.stat().st_size > 0:
        raise ArenaError(
            f"{path} exists; its battles and votes are kept: choose another name, or move it away"
        )
    if not prompts:
        raise ArenaError("the prompt set is empty")
    models = [engine.model_info(m).id for m in spec.models]  # a typo fails here, before any work
    if len(set(models)) != len(models):
        raise ArenaError(f"the models must differ, got {models}")
    details = {
        "spec": {**asdict(spec), "models": models},
        "prompt_file": str(prompt_file) if prompt_file else None,
        "prompts_sha256": _prompts_sha(prompts),
        "prompts": len(prompts),
    }
    record = RunRecord.create(engine, sidecar_path(path), spec.name, details)
    with record.active():
        replies = _generate(engine, spec, models, prompts, record.run_id, cancel, on_progress)
        if replies is None:
            record.finish(complete=False)
            return BattleRun(path, votes_path_for(path), record.run_id, 0, False)
        rows = _battle_rows(record.provenance, spec, prompts, models, replies)
        record.rows = append_rows(path, BATTLE_FIELDS, rows)
    record.finish(complete=True)
    return BattleRun(path, votes_path_for(path), record.run_id, record.rows, True)


def _generate(
    engine: Engine,
    spec: ArenaSpec,
    models: Sequence[str],
    prompts: Sequence[ArenaPrompt],
    run_id: str,
    cancel: CancelToken,
    on_progress: ProgressFn | None,
) -> Replies | None:
    """Every prompt's reply from every model, each model alone on the engine; None if cancelled."""
    total = len(prompts) * len(models)
    replies: Replies = {}
    if on_progress:
        on_progress(0, total, "waiting for the engine")
    with engine.exclusive(f"arena {spec.name}, run {run_id}"):
        for model in models:
            if cancel.cancelled:
                return None
            load_alone(engine, model)
            for index, item in enumerate(prompts):
                if cancel.cancelled:
                    return None
                request = GenerationRequest(
                    messages=_messages(item),
                    model=model,
                    sampling=replace(spec.sampling, seed=spec.seed + index),
                    max_tokens=spec.max_tokens,
                    cache=False,  # each reply's TTFT and tok/s are its own
                )
                reply = engine.generate(request, cancel.child())
                if reply.stats.finish_reason == "cancelled":
                    return None
                replies[(index, model)] = (reply.text, reply.stats)
                if on_progress:
                    on_progress(len(replies), total, f"{model}: prompt {index + 1} of {len(prompts)}")
    return replies


def _battle_rows(
    base: Mapping[str, Any],
    spec: ArenaSpec,
    prompts: Sequence[ArenaPrompt],
    models: Sequence[str],
    replies: Replies,
) -> list[dict[str, Any]]:
    """One battle per prompt and pair of models, the pair's shown order drawn at random."""
    rng = random.SystemRandom()
    rows: list[dict[str, Any]] = []
    for index, item in enumerate(prompts):
        for first, second in itertools.combinations(range(len(models)), 2):
            swapped = rng.random() < 0.5
            shown = (second, first) if swapped else (first, second)
            rows.append(_battle_row(base, spec, len(rows) + 1, index, item, models, shown, swapped, replies))
    return rows


def _messages(item: ArenaPrompt) -> tuple[Message, ...]:
    system = (Message("system", item.system),) if item.system.strip() else ()
    return (*system, Message("user", item.prompt))


def _prompts_sha(prompts: Sequence[ArenaPrompt]) -> str:
    data = json.dumps([asdict(p) for p in prompts], sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()


def _battle_row(
    base: Mapping[str, Any],
    spec: ArenaSpec,
    battle_id: int,
    index: int,
    item: ArenaPrompt,
    models: Sequence[str],
    shown: tuple[int, int],
    swapped: bool,
    replies: Replies,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        **base,
        "picker_order": "2,1" if swapped else "1,2",
        "mode": "arena",
        "prompt": item.prompt,
        "system_prompt": item.system,
        **{k: getattr(spec.sampling, k) for k in VOTE_SAMPLING_FIELDS},
        "max_tokens": spec.max_tokens,
        "seed": spec.seed + index,
        "arena": spec.name,
        "battle_id": battle_id,
        "prompt_index": index,
        "prompt_id": item.id,
    }
    for side, m in zip("ab", shown, strict=True):
        text, stats = replies[(index, models[m])]
        row[f"model_{side}"] = models[m]
        row[f"output_{side}"] = text
        for name in VOTE_STAT_FIELDS:
            row[f"{name}_{side}"] = getattr(stats, name)
    return {k: row[k] for k in BATTLE_FIELDS}


# ---- judging ------------------------------------------------------------------
def read_battles(path: str | Path) -> list[dict[str, str]]:
    """A battle file's rows, as written (strings; replies exactly as generated)."""
    path = Path(path)
    if not path.is_file():
        raise ArenaError(f"{path}: no such battle file")
    try:
        return read_rows(path, BATTLE_FIELDS)
    except ResultsSchemaError:
        raise ArenaError(f"{path}: not a battle file (its columns differ from the arena's)") from None


def judged_ids(votes_csv: Path) -> set[str]:
    """Battle ids already judged in `votes_csv`."""
    if not Path(votes_csv).exists():
        return set()
    try:
        return {row["battle_id"] for row in read_rows(votes_csv, ARENA_VOTE_FIELDS)}
    except ResultsSchemaError:
        raise ArenaError(f"{votes_csv}: not an arena vote file (its columns differ)") from None


@dataclass(frozen=True)
class JudgeState:
    """Where judging a battle file stands; `battle` is the next one (None: all judged)."""

    battles_path: Path
    votes_path: Path
    judged: int
    total: int
    battle: dict[str, str] | None

    def progress(self) -> str:
        return f"{self.judged} / {self.total} judged"


def judge_state(battles_csv: str | Path) -> JudgeState:
    """The next unjudged battle of `battles_csv`, in file order."""
    battles_csv = Path(battles_csv)
    battles = read_battles(battles_csv)
    votes_csv = votes_path_for(battles_csv)
    done = judged_ids(votes_csv)
    pending = next((b for b in battles if b["battle_id"] not in done), None)
    judged = sum(b["battle_id"] in done for b in battles)
    return JudgeState(battles_csv, votes_csv, judged, len(battles), pending)


def record_vote(
    battles_csv: str | Path, battle_id: str | int, verdict: str
) -> tuple[dict[str, str], JudgeState]:
    """Append the vote on battle `battle_id` (verdict a, b, tie or both_bad, as shown)
    to the set's vote file; returns the vote row (models revealed) and the new state.
    A battle takes one vote: judging it again is refused."""
    verdict = str(verdict).strip().lower().replace(" ", "_")
    if verdict not in PAIR_VERDICTS:
        raise ArenaError(f"verdict must be one of {list(PAIR_VERDICTS)}, got {verdict!r}")
    battles_csv = Path(battles_csv)
    battles = {b["battle_id"]: b for b in read_battles(battles_csv)}
    battle = battles.get(str(battle_id))
    if battle is None:
        raise ArenaError(f"{battles_csv}: no battle {battle_id}")
    votes_csv = votes_path_for(battles_csv)
    if battle["battle_id"] in judged_ids(votes_csv):
        raise ArenaError(f"battle {battle_id} is already judged; each battle takes one vote")
    winner = battle["model_a"] if verdict == "a" else battle["model_b"] if verdict == "b" else ""
    row = {**battle, "verdict": verdict, "winner_model": winner, "judged_at": now_utc()}
    append_rows(votes_csv, ARENA_VOTE_FIELDS, [{k: row[k] for k in ARENA_VOTE_FIELDS}])
    return row, judge_state(battles_csv)
