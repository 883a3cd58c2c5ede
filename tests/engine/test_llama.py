import json
from pathlib import Path

import jsonschema
import pytest

from homellm.engine.llama import EngineOptions, LlamaEngine
from homellm.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    ModelLoadError,
)
from homellm.generation import Finished, ResponseFormat, SamplingParams, TextDelta

GREEDY = SamplingParams(max_tokens=40, temperature=0.0, seed=1)


def answer(engine: LlamaEngine, question: str, params: SamplingParams = GREEDY,
           grammar: str | None = None) -> tuple[str, Finished]:
    prompt = engine.tokenize(engine.render_chat([{"role": "user", "content": question}]))
    events = list(engine.generate(prompt, params, grammar, lambda: False))
    assert isinstance(events[-1], Finished)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def test_builtin_model_names_capitals(engine):
    text, done = answer(engine, "Name the capital of France.")
    assert "Paris" in text
    assert done.reason == "stop"
    text, _ = answer(engine, "What is the capital of Germany?")
    assert "Berlin" in text


def test_token_counts_are_true(engine):
    prompt = engine.tokenize(engine.render_chat([{"role": "user", "content": "Count to twenty."}]))
    params = SamplingParams(max_tokens=5, temperature=0.0)
    events = list(engine.generate(prompt, params, None, lambda: False))
    done = events[-1]
    assert done == Finished("length", len(prompt), 5)
    text = "".join(e.text for e in events[:-1])
    assert 1 <= len(engine.tokenize(text)) - (1 if engine._add_bos else 0) <= 6


def test_prompt_plus_max_tokens_beyond_context_is_refused(engine):
    with pytest.raises(ContextLengthExceededError) as info:
        engine.completion_budget(2000, 100)
    assert info.value.code == "context_length_exceeded"
    assert "2048" in info.value.message


def test_prompt_longer_than_context_is_refused_even_without_max_tokens(engine):
    with pytest.raises(ContextLengthExceededError):
        engine.completion_budget(engine.n_ctx, None)


def test_open_max_tokens_gets_the_rest_of_the_context(engine):
    assert engine.completion_budget(48, None) == engine.n_ctx - 48


def test_stop_string_ends_generation_and_is_not_included(engine):
    text, done = answer(engine, "Name the capital of France.",
                        SamplingParams(max_tokens=40, temperature=0.0, stop=(" is",)))
    assert done.reason == "stop"
    assert text == "The capital of France"


def test_cancel_stops_within_a_token(engine):
    prompt = engine.tokenize("1, 2, 3, 4, 5,")
    seen = []

    def cancelled() -> bool:
        return len(seen) >= 3

    for event in engine.generate(prompt, SamplingParams(max_tokens=500, temperature=0.0), None, cancelled):
        seen.append(event)
    assert seen[-1].reason == "cancelled"
    assert seen[-1].completion_tokens <= 4


def test_same_seed_same_sample_at_high_temperature(engine):
    params = SamplingParams(max_tokens=24, temperature=1.2, seed=42)
    first, _ = answer(engine, "Write a line about the sea.", params)
    second, _ = answer(engine, "Write a line about the sea.", params)
    assert first == second


def test_json_schema_output_validates(engine):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    grammar = engine.grammar(ResponseFormat("json_schema", schema))
    text, done = answer(engine, "Name the capital of France as JSON.",
                        SamplingParams(max_tokens=80, temperature=0.0), grammar)
    assert done.reason == "stop"
    jsonschema.validate(json.loads(text), schema)


def test_json_object_output_parses(engine):
    grammar = engine.grammar(ResponseFormat("json_object"))
    text, done = answer(engine, "Give the name and age of a person as JSON.",
                        SamplingParams(max_tokens=300, temperature=0.0), grammar)
    assert done.reason == "stop"
    assert isinstance(json.loads(text), dict)


def test_unconvertible_schema_is_a_bad_request(engine):
    with pytest.raises(InvalidRequestError, match="json_schema"):
        engine.grammar(ResponseFormat("json_schema", {"$ref": "https://example.com/remote.json"}))


def test_text_format_needs_no_grammar(engine):
    assert engine.grammar(ResponseFormat()) is None


def test_file_that_is_not_gguf_is_refused(tmp_path: Path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a model at all" * 100)
    with pytest.raises(ModelLoadError, match="bogus.gguf"):
        LlamaEngine(bogus, EngineOptions(n_ctx=256))


def test_greedy_answer_does_not_depend_on_the_request_before(engine):
    story = "Here is a story. " + "The fox ran over the hill and the dog slept. " * 60 + "Summarize the story."
    follow_up = story + " Then the dog woke up. What did the dog do?"
    params = SamplingParams(max_tokens=30, temperature=0.0)
    answer(engine, "Name the capital of France.")
    fresh, _ = answer(engine, follow_up, params)
    answer(engine, story, params)  # leaves the story's whole chunks in the cache
    reused, _ = answer(engine, follow_up, params)
    again, _ = answer(engine, follow_up, params)
    assert engine._reusable_prefix(engine.tokenize(engine.render_chat([{"role": "user", "content": follow_up}]))) > 0
    assert fresh == reused == again
