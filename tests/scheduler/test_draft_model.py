"""Speculative decoding with a draft model, on the real engine: the target's answer, whatever drafts.

The built-in model drafts for itself (its drafts are mostly right), and a tiny random model with the
same vocabulary drafts for it (it is never sure of a token, so it drafts nothing). One thread each, as
in test_speculative_decoding.py, so that a token's logits do not depend on what is decoded beside it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
from ggufs import write_tiny_dense
from hypothesis import given
from hypothesis import strategies as st
from scheduled import chat_answer, model_status

from homellm.engine.llama import EngineOptions, LlamaEngine
from homellm.errors import ModelLoadError
from homellm.generation import Finished, ResponseFormat, SamplingParams
from homellm.models.resolve import ModelRef
from homellm.scheduler import Scheduler
from homellm.scheduler.draft_model import DraftRequest, ModelDrafter, common_prefix
from homellm.scheduler.placement import DraftPlan
from homellm.scheduler.slots import shared_prefix
from homellm.scheduler.speculation import Acceptance, explore_every

PLAIN, SELF, TINY = "plain", "self-drafted", "tiny-drafted"
OPTIONS = EngineOptions(n_ctx=1024, n_parallel=2, n_threads=1)
STORY = [{"role": "user", "content": "Write a story about a lighthouse keeper and a storm."}]


@pytest.fixture(scope="module")
def drafted(builtin_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scheduler]:
    """The built-in model plain, drafted by itself (drafting at least 4 tokens whatever it costs: these
    tests check the verification, not when it pays) and drafted by a tiny random model."""
    tiny = write_tiny_dense(tmp_path_factory.mktemp("draft") / "tiny.gguf")
    loaded = Scheduler()
    loaded.add(ModelRef(PLAIN, builtin_path), OPTIONS).wait_loaded()
    spec = EngineOptions(n_ctx=1024, n_parallel=2, n_threads=1, speculation="draft", draft_min=4)
    loaded.add(ModelRef(SELF, builtin_path), spec, draft=DraftPlan("builtin", builtin_path, OPTIONS)).wait_loaded()
    loaded.add(ModelRef(TINY, builtin_path), spec, draft=DraftPlan("tiny", tiny, OPTIONS)).wait_loaded()
    yield loaded
    loaded.close()


def chat(scheduler: Scheduler, model: str, params: SamplingParams, messages=STORY) -> tuple[str, Finished]:
    return chat_answer(scheduler, model, messages, params)


def test_a_greedy_story_is_token_for_token_the_same_with_a_draft_model(drafted):
    params = SamplingParams(max_tokens=200, temperature=0.0)
    before = model_status(drafted, SELF)
    plain, plain_done = chat(drafted, PLAIN, params)
    fast, fast_done = chat(drafted, SELF, params)
    after = model_status(drafted, SELF)
    assert fast == plain
    assert fast_done.completion_tokens == plain_done.completion_tokens == 200
    drafted_tokens, accepted = after.drafted - before.drafted, after.accepted - before.accepted
    assert drafted_tokens >= 40 and accepted / drafted_tokens > 0.8  # a model agrees with itself
    assert (after.speculation, after.draft) == ("draft", "builtin")


@pytest.mark.parametrize("seed", [3, 11])
def test_seeded_samples_are_the_same_with_a_draft_model(drafted, seed: int):
    params = SamplingParams(max_tokens=80, temperature=0.9, seed=seed)
    assert chat(drafted, SELF, params)[0] == chat(drafted, PLAIN, params)[0]


def test_json_schema_output_is_the_same_and_valid_with_a_draft_model(drafted):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    params = SamplingParams(max_tokens=60, temperature=0.0, response_format=ResponseFormat("json_schema", schema))
    messages = [{"role": "user", "content": "Give the name and age of a lighthouse keeper as JSON."}]
    plain, _ = chat(drafted, PLAIN, params, messages)
    fast, _ = chat(drafted, SELF, params, messages)
    assert fast == plain
    jsonschema.validate(json.loads(fast), schema)


def test_two_slots_drafted_together_each_get_their_own_answer(drafted):
    params = SamplingParams(max_tokens=60, temperature=0.0)
    questions = [[{"role": "user", "content": text}] for text in ("Name three rivers.", "Describe a cat.")]

    async def both(model: str) -> list[str]:
        generations = [await drafted.chat(model, messages, params) for messages in questions]
        return [(await g.collect())[0] for g in generations]

    assert asyncio.run(both(SELF)) == asyncio.run(both(PLAIN))


def test_an_unsure_draft_model_drafts_nothing_and_the_answer_is_unchanged(drafted):
    params = SamplingParams(max_tokens=60, temperature=0.0)
    before = model_status(drafted, TINY)
    assert chat(drafted, TINY, params)[0] == chat(drafted, PLAIN, params)[0]
    after = model_status(drafted, TINY)
    # Random weights spread the draft's probability over 49,152 tokens: never above MIN_CONFIDENCE.
    assert after.drafted == before.drafted and after.state == "ready"


def test_a_draft_model_with_another_vocabulary_is_refused_at_load_naming_both(builtin_path: Path, tmp_path: Path):
    other = write_tiny_dense(tmp_path / "swapped.gguf", swapped_tokens=True)
    loaded = Scheduler()
    try:
        runner = loaded.add(ModelRef("target", builtin_path), replace(OPTIONS, speculation="draft"),
                            draft=DraftPlan("swapped", other, OPTIONS))
        with pytest.raises(ModelLoadError) as refused:
            runner.wait_loaded()
        message = refused.value.one_line()
        assert "swapped cannot draft for target" in message and "token 100" in message
    finally:
        loaded.close()


def test_a_draft_far_behind_starts_again_from_the_last_window_of_the_text(builtin_path: Path):
    engine = LlamaEngine(builtin_path, OPTIONS)
    windowed, whole = ModelDrafter(engine, "windowed", window=32), ModelDrafter(engine, "whole", window=1024)
    try:
        sentence = "The keeper climbed the stairs, counted the steps and lit the lamp. "
        text = engine.tokenize(sentence * 8 + "The keeper climbed the stairs, counted")
        drafts = windowed.propose([DraftRequest(0, text, 4)])[0]
        assert windowed.following(0) == len(text) - 32
        # The same drafts as a draft that was only ever shown those last 32 tokens, from position 0.
        assert whole.propose([DraftRequest(1, text[-32:], 4)])[1] == drafts and whole.following(1) == 0
        assert len(drafts) == 4  # the sentence repeats: the model is sure how it goes on
        # Drafting on, a few tokens behind: it follows from where it is, without starting again.
        windowed.propose([DraftRequest(0, [*text, *drafts[:2]], 4)])
        assert windowed.following(0) == len(text) - 32
        # Another slot's text on the same sequence, shorter than the window: all of it, from its start.
        windowed.propose([DraftRequest(0, text[:20], 2)])
        assert windowed.following(0) == 0
    finally:
        engine.close()


def test_a_draft_model_measures_again_only_as_often_as_keeps_it_to_a_fiftieth_of_the_time():
    # 0.34 s per measuring draft (catching up on 64 steps on two cores) against 27 ms steps.
    assert explore_every(0.34, 0.027, 64) == 630
    assert explore_every(0.001, 0.027, 64) == 64  # cheap (a GPU): the least
    assert explore_every(0.34, 0.0, 64) == 64  # no step measured yet


def test_a_new_slot_starts_from_the_acceptance_the_draft_model_had_lately():
    lately = Acceptance()
    for _ in range(20):
        lately.record(4, False)
    carried = lately.carried()
    assert carried.rate == pytest.approx(lately.rate) and carried.accepted + carried.rejected == pytest.approx(2)
    assert Acceptance().carried().rate == 0.5


@given(st.lists(st.integers(0, 2), max_size=40), st.lists(st.integers(0, 2), max_size=40))
def test_the_drafts_prefix_search_counts_what_a_token_by_token_walk_counts(a: list[int], b: list[int]):
    assert common_prefix(a, b) == shared_prefix(a, b)
