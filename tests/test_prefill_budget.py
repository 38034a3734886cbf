"""PrefillBudget: a long prompt's chunk shrinks to about `share` decode steps of work while streams
decode (as the cost per prompt token grows with depth); short prompts and idle batches get the
whole prefill step."""

from __future__ import annotations

from workbench.engine.prefill_budget import MIN_CHUNK, PrefillBudget


def test_the_chunk_follows_the_measured_costs() -> None:
    budget = PrefillBudget(most=256, share=1.0)
    assert budget.size(decoding=4, prompts=[4096]) == 256  # nothing measured yet
    budget.observe(prompt_tokens=256, prompt_s=0.9, decode_steps=1, decode_s=0.1)
    assert budget.size(decoding=0, prompts=[4096]) == 256  # nobody to keep flowing
    assert budget.size(decoding=4, prompts=[128, 256]) == 256  # short prompts: one step, uncut
    shallow = budget.size(decoding=4, prompts=[4096])
    assert shallow == int(0.1 / (0.9 / 256))  # ~28 tokens take one decode step
    budget.observe(prompt_tokens=shallow, prompt_s=shallow * 0.005, decode_steps=1, decode_s=0.1)
    deep = budget.size(decoding=4, prompts=[4096])
    assert MIN_CHUNK <= deep < shallow  # deeper context, costlier tokens: a smaller chunk
    assert budget.size(decoding=4, prompts=[4096, 300]) <= deep // 2 + 1  # two prompts share the budget
    assert PrefillBudget(most=256, share=0.0, decode_s=0.1, token_s=0.02).size(4, [4096]) == 256
    budget.observe(prompt_tokens=8, prompt_s=8.0, decode_steps=1, decode_s=0.1)
    assert budget.size(decoding=4, prompts=[4096]) == MIN_CHUNK
