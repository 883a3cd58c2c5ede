"""Speculative decoding in the decode loop, on the real engine: the same tokens as without it.

Both models run on one thread: llama.cpp's CPU attention then computes a token's logits the
same way whether it is decoded alone or beside drafts (with several threads a lone token past
256 cached tokens takes another path, and near ties can flip; see scheduler/slots.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import jsonschema
import pytest
from scheduled import completion, model_status

from homellm.engine.llama import EngineOptions
from homellm.generation import Finished, ResponseFormat, SamplingParams, TextDelta
from homellm.models.resolve import ModelRef
from homellm.scheduler import Scheduler

PLAIN, SPEC = "plain", "spec"
TEXT = ("The lighthouse keeper climbed the stairs at dusk, wound the clockwork that turned the lens, and wrote "
        "in the log the wind, the sea and the ships that passed. Every night for forty years he did the same, "
        "and every morning he put out the lamp, cleaned the glass and slept until noon.")
# A completion that has started to repeat a text: the model goes on copying it, and n-grams draft it.
COPYING = f"{TEXT}\n\n{TEXT[:60]}"


@pytest.fixture(scope="module")
def twins(builtin_path) -> Iterator[Scheduler]:
    """The built-in model twice, with and without speculation, one thread each, two slots. The
    speculating one drafts whatever it costs: the tests check the verification, not when it pays."""
    loaded = Scheduler()
    for name, speculation in ((PLAIN, "off"), (SPEC, "ngram")):
        options = EngineOptions(n_ctx=1024, n_parallel=2, n_threads=1, speculation=speculation, draft_min=4)
        loaded.add(ModelRef(name, builtin_path), options).wait_loaded()
    yield loaded
    loaded.close()


def test_greedy_copy_is_token_for_token_the_same_and_drafts_are_accepted(twins):
    params = SamplingParams(max_tokens=160, temperature=0.0)
    before = model_status(twins, SPEC)
    plain, plain_done = completion(twins, PLAIN, COPYING, params)
    fast, fast_done = completion(twins, SPEC, COPYING, params)
    after = model_status(twins, SPEC)
    assert fast == plain
    assert (fast_done.reason, fast_done.completion_tokens) == (plain_done.reason, plain_done.completion_tokens)
    drafted, accepted = after.drafted - before.drafted, after.accepted - before.accepted
    assert drafted > 0 and accepted > 0.7 * drafted  # it copies, and the drafts say so
    assert "Every night for forty years" in fast
    assert model_status(twins, PLAIN).drafted == 0


def test_long_free_text_at_temperature_zero_is_the_same(twins):
    params = SamplingParams(max_tokens=300, temperature=0.0)
    prompt = "Once upon a time, in a village by the sea, there lived"
    plain, _ = completion(twins, PLAIN, prompt, params)
    fast, _ = completion(twins, SPEC, prompt, params)
    assert fast == plain
    assert len(plain) > 600


def test_seeded_sampling_gives_the_same_text(twins):
    # Each emitted token is one draw from the model's own distribution whether or not a draft
    # was there: with the same seed the draws, and so the tokens, are the same.
    for seed in (1, 2, 3, 4):
        params = SamplingParams(max_tokens=60, temperature=0.9, seed=seed, top_k=0, top_p=1.0, min_p=0.0)
        assert completion(twins, SPEC, COPYING, params)[0] == completion(twins, PLAIN, COPYING, params)[0]


def test_unseeded_samples_have_the_same_frequencies(twins):
    # Four tokens of a copy at temperature 1: the model copies them about three times in four.
    prompt = f"{TEXT}\n\n{TEXT[:TEXT.index('Every night') + len('Every night')]}"
    copied = completion(twins, PLAIN, prompt, SamplingParams(max_tokens=4, temperature=0.0))[0]
    params = SamplingParams(max_tokens=4, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0)
    runs = 48
    before = model_status(twins, SPEC).drafted
    plain = sum(completion(twins, PLAIN, prompt, params)[0] == copied for _ in range(runs))
    fast = sum(completion(twins, SPEC, prompt, params)[0] == copied for _ in range(runs))
    assert model_status(twins, SPEC).drafted > before  # the samples were drafted for
    pooled = (plain + fast) / (2 * runs)
    assert 0 < pooled < 1  # both outcomes happen: the test can tell them apart
    spread = (2 * pooled * (1 - pooled) / runs) ** 0.5
    assert abs(plain - fast) / runs / spread < 4  # a two-proportion z-test; chance crosses 4 once in 15,000


def test_json_schema_output_is_the_same_and_valid(twins):
    schema = {"type": "object", "properties": {"items": {"type": "array", "items": {
        "type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "count": {"type": "integer"}},
        "required": ["name", "count"]}, "maxItems": 5}}, "required": ["items"]}
    params = SamplingParams(max_tokens=300, temperature=0.0,
                            response_format=ResponseFormat("json_schema", schema))
    prompt = 'Inventory as JSON: 3 apples, 5 pears, 2 plums, 7 figs, 1 melon.\n'
    plain, _ = completion(twins, PLAIN, prompt, params)
    fast, _ = completion(twins, SPEC, prompt, params)
    assert fast == plain
    jsonschema.validate(json.loads(fast), schema)


def test_stop_string_inside_an_accepted_draft_ends_the_answer_there(twins):
    stop = TEXT[90:104]
    params = SamplingParams(max_tokens=160, temperature=0.0, stop=(stop,))
    plain, plain_done = completion(twins, PLAIN, COPYING, params)
    fast, fast_done = completion(twins, SPEC, COPYING, params)
    assert fast == plain and stop not in fast
    assert fast_done.reason == plain_done.reason == "stop"
    assert fast_done.stop_string == stop


def test_mixed_slots_each_get_their_own_answer(twins):
    copy_params = SamplingParams(max_tokens=120, temperature=0.0)
    free_params = SamplingParams(max_tokens=60, temperature=0.0)
    free_prompt = "My favourite animals are"
    alone_copy, _ = completion(twins, PLAIN, COPYING, copy_params)
    alone_free, _ = completion(twins, PLAIN, free_prompt, free_params)

    async def both() -> tuple[str, str]:
        copy = await twins.complete(SPEC, COPYING, copy_params)
        free = await twins.complete(SPEC, free_prompt, free_params)
        (a, _), (b, _) = await asyncio.gather(copy.collect(), free.collect())
        return a, b

    together_copy, together_free = asyncio.run(both())
    assert (together_copy, together_free) == (alone_copy, alone_free)


def test_cancelling_a_speculating_request_frees_its_slot(twins):
    async def cancel_after_some() -> Finished:
        generation = await twins.complete(SPEC, COPYING, SamplingParams(max_tokens=400, temperature=0.0))
        seen = 0
        async for batch in generation.events():
            seen += sum(isinstance(e, TextDelta) for e in batch)
            if seen >= 2:
                generation.cancel()
            if isinstance(batch[-1], Finished):
                return batch[-1]
        raise AssertionError("no Finished event")

    done = asyncio.run(cancel_after_some())
    assert done.reason == "cancelled" and done.completion_tokens < 400
    params = SamplingParams(max_tokens=40, temperature=0.0)
    assert completion(twins, SPEC, COPYING, params)[0] == completion(twins, PLAIN, COPYING, params)[0]
