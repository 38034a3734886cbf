"""Speculative decoding on the real embedded model: greedy output is identical with and without
it (prompt lookup and a draft model, alone and in a batch of 4 with mixed modes, from the prompt
cache too), its counts reach
the stats, timings and /metrics; a draft model with another tokenizer, or an unregistered one, is a
clear 400 on both APIs; requests it cannot serve (a grammar) decode without it. Nothing here is
timed: acceptance is counted in tokens."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from api.app import create_app
from tests.fake_hub import write_tiny_model
from tests.helpers import LiveServer
from workbench.config import Settings
from workbench.engine import Engine, GenerationRequest
from workbench.engine.drafting import PromptLookup, Throttle
from workbench.engine.models.embedded import EMBEDDED_IDS
from workbench.engine.speculation import Speculation
from workbench.loadgen.loadtest import WORDS

F32, Q4 = EMBEDDED_IDS["f32"], EMBEDDED_IDS["4bit"]
CODE = "".join(
    f"def {f}(a, b):\n    return a {op} b\n\n" for f, op in (("add", "+"), ("sub", "-"), ("mul", "*"))
)
COPY = [{"role": "user", "content": "Repeat this code exactly, nothing else:\n\n" + CODE}]
LOOKUP, DRAFT = Speculation("prompt_lookup"), Speculation("draft", draft_model=Q4)


def test_prompt_lookup_drafts_what_followed_the_last_ngram_before() -> None:
    lookup = PromptLookup()
    assert lookup.propose([1, 2, 3, 4, 9, 9, 2, 3], 3) == [4, 9, 9]  # "2 3" was followed by 4 9 9
    assert lookup.propose([1, 2, 3, 4, 9, 9, 2, 3, 4], 2) == [9, 9]  # longest match: "2 3 4"
    assert PromptLookup().propose([5, 6, 7], 4) == []  # nothing repeats
    throttle = Throttle()
    for _ in range(4):
        throttle.record(8, 0)  # four steps whose drafts all failed
    assert [throttle.drafting() for _ in range(9)] == [False] * 8 + [True]


def test_speculation_options_are_checked() -> None:
    for bad, param in [
        ({"mode": "fast"}, "speculative.mode"),
        ({"mode": "draft"}, "speculative.draft_model"),
        ({"draft_tokens": 0}, "speculative.draft_tokens"),
        ({"mode": "prompt_lookup", "draft_model": Q4}, "speculative.draft_model"),
        ({"ngram": 3}, "speculative.ngram"),
        (7, "speculative"),
    ]:
        with pytest.raises(ValueError) as err:
            Speculation.coerce(bad)
        assert getattr(err.value, "param", None) == param, (bad, err.value)
    assert Speculation.coerce(True) == LOOKUP and Speculation.coerce({"draft_model": Q4}) == DRAFT


def _ask(spec: Speculation | None, **kw: object) -> GenerationRequest:
    return GenerationRequest(
        messages=COPY, model=F32, max_tokens=48, speculative=spec or Speculation("off"), **kw
    )


@pytest.mark.slow
def test_greedy_output_is_identical_with_and_without_speculation(engine: Engine) -> None:
    plain = engine.generate(_ask(None))
    assert plain.stats.speculative == "" and plain.stats.decode_steps == 0
    for spec in (LOOKUP, DRAFT):
        fast = engine.generate(_ask(spec))
        s = fast.stats
        assert fast.text == plain.text and s.generation_tokens == plain.stats.generation_tokens, spec
        assert s.speculative == spec.label() and 0 < s.accepted_tokens <= s.draft_tokens
        assert s.decode_steps < s.generation_tokens  # some steps made more than one token
        assert s.cached_tokens > 0  # the prompt cache the batch filled served this prompt
    # A raw prompt and a prompt whose text never repeats: identical too (the drafts just fail).
    raw = GenerationRequest(prompt="The capital of France is", model=F32, max_tokens=24, ignore_eos=True)
    spec_raw = GenerationRequest(
        prompt="The capital of France is", model=F32, max_tokens=24, ignore_eos=True, speculative=LOOKUP
    )
    assert engine.generate(spec_raw).text == engine.generate(raw).text


@pytest.mark.slow
def test_a_batch_of_four_with_mixed_modes_gives_each_its_own_greedy_output(engine: Engine) -> None:
    prompts = [CODE, "Say the word apple five times.", "Count from one to ten in words.", CODE.upper()]
    modes = [LOOKUP, None, DRAFT, LOOKUP]

    def request(i: int, spec: Speculation | None) -> GenerationRequest:
        msgs = [{"role": "user", "content": "Repeat exactly:\n" + prompts[i]}]
        return GenerationRequest(
            messages=msgs, model=F32, max_tokens=32, speculative=spec or Speculation("off")
        )

    alone = [engine.generate(request(i, None)).text for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda i: engine.generate(request(i, modes[i])), range(4)))
    assert [c.text for c in together] == alone
    assert [c.stats.speculative for c in together] == [m.label() if m else "" for m in modes]
    assert max(c.stats.concurrent_streams for c in together) > 1  # they did share the engine


@pytest.fixture(scope="module")
def server(settings: Settings, engine: Engine) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings, engine, with_ui=False)) as live:
        yield live


@pytest.fixture(scope="module")
def other_tokenizer(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A registered tiny model whose tokenizer is a 300-word vocabulary, not SmolLM2's."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    source = Path(engine.load(F32).path or "")
    folder = tmp_path_factory.mktemp("othertok") / "other-tokenizer"
    write_tiny_model(source, folder)
    vocab = {w: i for i, w in enumerate(dict.fromkeys(["<unk>", "</s>", *WORDS]))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "</s>", "unk_token": "<unk>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "special_tokens_map.json").unlink(missing_ok=True)
    return engine.model_info(str(folder)).id  # registered from here on


@pytest.mark.slow
def test_the_apis_take_speculative_and_report_it(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x")
    plain = client.chat.completions.create(model=F32, messages=COPY, max_tokens=32, temperature=0)
    before = httpx.get(server.url + "/metrics").text
    fast = client.chat.completions.create(
        model=F32, messages=COPY, max_tokens=32, temperature=0, extra_body={"speculative": "prompt_lookup"}
    )
    assert fast.choices[0].message.content == plain.choices[0].message.content
    t = fast.model_extra["timings"]
    assert t["speculative"] == "prompt_lookup:8" and t["accepted_tokens"] > 0
    assert t["acceptance_rate"] == pytest.approx(t["accepted_tokens"] / t["draft_tokens"])
    assert t["tokens_per_step"] == pytest.approx(t["generation_tokens"] / t["decode_steps"])
    assert t["tokens_per_step"] > 1
    assert plain.model_extra["timings"]["tokens_per_step"] is None

    def accepted(metrics: str) -> float:
        name = f'workbench_speculative_accepted_tokens_total{{model="{F32}"}}'
        return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name))

    assert accepted(httpx.get(server.url + "/metrics").text) - accepted(before) == t["accepted_tokens"]
    # Streamed, on completions, and on Anthropic's API with a draft model.
    stream = client.completions.create(
        model=F32, prompt=CODE, max_tokens=16, temperature=0, stream=True, extra_body={"speculative": True}
    )
    last = [c for c in stream][-1]
    assert last.model_extra["timings"]["speculative"] == "prompt_lookup:8"
    claude = anthropic.Anthropic(base_url=server.url, api_key="x")
    msg = claude.messages.create(
        model=F32,
        max_tokens=16,
        messages=COPY,
        extra_body={"speculative": {"mode": "draft", "draft_model": Q4, "draft_tokens": 2}},
    )
    assert msg.model_extra["timings"]["speculative"] == f"draft:{Q4}:2"
    # A grammar keeps its state per drawn token: such a request decodes without speculation.
    shaped = client.chat.completions.create(
        model=F32,
        messages=COPY,
        max_tokens=16,
        response_format={"type": "json_object"},
        extra_body={"speculative": "prompt_lookup"},
    )
    assert shaped.model_extra["timings"]["speculative"] == ""


@pytest.mark.slow
def test_a_draft_model_with_another_tokenizer_or_unregistered_is_a_400(
    server: LiveServer, other_tokenizer: str, tmp_path: Path
) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x")
    claude = anthropic.Anthropic(base_url=server.url, api_key="x")
    for draft, says in [
        (other_tokenizer, "has another tokenizer"),
        (str(tmp_path), "not"),  # a path, never resolved for a draft model
        ("no-such-model", "no-such-model"),
    ]:
        body = {"speculative": {"mode": "draft", "draft_model": draft}}
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model=F32, messages=COPY, max_tokens=4, extra_body=body)
        assert err.value.body["param"] == "speculative.draft_model" and says in err.value.body["message"]
        with pytest.raises(anthropic.BadRequestError) as aerr:
            claude.messages.create(model=F32, max_tokens=4, messages=COPY, extra_body=body)
        assert says in aerr.value.body["error"]["message"]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=F32, messages=COPY, max_tokens=4, extra_body={"speculative": {"mode": "fast"}}
        )
    assert "speculative.mode" in err.value.body["message"]
