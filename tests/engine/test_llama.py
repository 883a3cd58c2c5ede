"""The engine's own parts: tokens, limits, grammars, and decoding many sequences in one batch."""

from pathlib import Path

import pytest

from homellm.engine.llama import EngineOptions, LlamaEngine
from homellm.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    ModelLoadError,
)
from homellm.generation import ResponseFormat, SamplingParams

GREEDY = SamplingParams(max_tokens=40, temperature=0.0, seed=1)


def greedy_tokens(engine: LlamaEngine, prompts: dict[int, list[int]], steps: int) -> dict[int, list[int]]:
    """Decode `steps` greedy tokens for each sequence's prompt, all sequences in the same batches."""
    batch = engine.new_batch()
    samplers = {seq: engine.sampler(GREEDY, None) for seq in prompts}
    out: dict[int, list[int]] = {seq: [] for seq in prompts}
    index: dict[int, int] = {}
    try:
        for seq, prompt in prompts.items():
            engine.keep_prefix(seq, 0)
            batch.clear()
            index[seq] = batch.add_run(prompt, 0, seq, logits_last=True)
            engine.decode(batch)
            out[seq].append(engine.sample(samplers[seq], index[seq]))
        for _ in range(steps - 1):
            batch.clear()
            for seq, prompt in prompts.items():
                index[seq] = batch.add(out[seq][-1], len(prompt) + len(out[seq]) - 1, seq, True)
            engine.decode(batch)
            for seq in prompts:
                out[seq].append(engine.sample(samplers[seq], index[seq]))
    finally:
        batch.close()
        for sampler in samplers.values():
            sampler.close()
    return out


@pytest.fixture(scope="module")
def parallel_engine(builtin_path: Path):
    loaded = LlamaEngine(builtin_path, EngineOptions(n_ctx=512, n_parallel=3))
    yield loaded
    loaded.close()


def test_sequences_decoded_together_keep_to_their_own_prompts(parallel_engine: LlamaEngine):
    questions = ["Name the capital of France.", "What is the capital of Germany?", "Name the capital of Italy."]
    prompts = {seq: parallel_engine.tokenize(parallel_engine.render_chat([{"role": "user", "content": q}]))
               for seq, q in enumerate(questions)}
    together = greedy_tokens(parallel_engine, prompts, 12)
    texts = {seq: b"".join(parallel_engine.piece(t) for t in tokens).decode() for seq, tokens in together.items()}
    assert "Paris" in texts[0] and "Berlin" in texts[1] and "Rome" in texts[2]
    alone = greedy_tokens(parallel_engine, {1: prompts[1]}, 12)
    assert alone[1][:6] == together[1][:6]


def test_a_context_holds_the_asked_sequences_each_with_its_own_context(parallel_engine: LlamaEngine):
    assert parallel_engine.n_slots == 3
    assert parallel_engine.n_ctx == 512


def test_keep_prefix_cuts_a_sequence_and_empty_is_empty(parallel_engine: LlamaEngine):
    prompt = parallel_engine.tokenize("one two three four five six")
    greedy_tokens(parallel_engine, {2: prompt}, 1)
    assert parallel_engine.keep_prefix(2, 3) == 3
    assert parallel_engine.keep_prefix(2, 0) == 0


def test_a_batch_llama_cpp_refuses_is_an_engine_error(parallel_engine: LlamaEngine):
    from homellm.errors import EngineError

    batch = parallel_engine.new_batch()
    try:
        batch.add(1, 0, 7, True)  # the context has sequences 0 to 2 only
        with pytest.raises(EngineError, match="could not decode"):
            parallel_engine.decode(batch)
    finally:
        batch.close()


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



def test_a_repeat_window_past_the_context_is_the_context(engine):
    # llama.cpp allocates the window up front: a billion tokens would be 4 GB for one request.
    sampler = engine.sampler(SamplingParams(repeat_penalty=1.2, repeat_last_n=1_000_000_000), None)
    sampler.close()
