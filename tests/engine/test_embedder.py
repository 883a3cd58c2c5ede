"""The embedding engine: llama.cpp's BERT on the converted all-MiniLM-L6-v2 agrees with a numpy BERT."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from bert_reference import BertReference

from homellm.engine.embedder import Embedder
from homellm.errors import ContextLengthExceededError, EngineError
from homellm.models.minilm import convert_bert, minilm_dir

SENTENCES = [
    "A cat sits on the mat.",
    "Hello, world! It's 3:45pm on 2024-05-17, and the price is $1,299.99 (tax incl.).",
    "The café in Zürich serves crème brûlée to naïve tourists.",
    "unaffable antidisestablishmentarianism xylophonists",
    "Ελληνικά και русский текст, and 東京 too",
    ("Thermodynamics governs heat engines: the second law states that the entropy of an isolated system "
     "never decreases, which places a fundamental limit on the efficiency of any engine converting heat "
     "into work; Carnot showed that this limit depends only on the temperatures of the two reservoirs."),
]
LONG_TEXT = "The quick brown fox jumps over the lazy dog near the riverbank at dawn. " * 50


@pytest.fixture(scope="module")
def gguf_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 converted once for this module."""
    return convert_bert(minilm_dir(), tmp_path_factory.mktemp("minilm") / "minilm.gguf")


@pytest.fixture(scope="module")
def embedder(gguf_path: Path) -> Iterator[Embedder]:
    with Embedder(gguf_path) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def reference() -> BertReference:
    return BertReference(minilm_dir())


# Parity with the original model

def test_tokenizer_matches_huggingface_wordpiece(embedder: Embedder, reference: BertReference) -> None:
    for sentence in SENTENCES:
        ids = embedder.tokenize(sentence)
        assert ids == reference.tokenizer.encode(sentence), sentence
        assert ids[0] == 101 and ids[-1] == 102  # [CLS] ... [SEP]
        assert embedder.count_tokens(sentence) == len(ids)


def test_vectors_match_numpy_bert_on_original_weights(embedder: Embedder, reference: BertReference) -> None:
    result = embedder.embed(SENTENCES)
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (len(SENTENCES), 384)
    assert np.allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    assert result.prompt_tokens == sum(len(embedder.tokenize(s)) for s in SENTENCES)
    expected = np.stack([reference.embed_ids(embedder.tokenize(s)) for s in SENTENCES])
    cosines = result.vectors @ expected.T
    for index, sentence in enumerate(SENTENCES):
        assert cosines[index, index] >= 0.999, (sentence, cosines[index, index])
        # Each vector is its own sentence's, not merely close to every vector.
        assert cosines[index, index] > np.delete(cosines[index], index).max() + 0.2


def test_similar_sentences_are_closer_than_unrelated_ones(embedder: Embedder) -> None:
    cat, kitten, stocks = embedder.embed(
        ["A cat sits on the mat", "A kitten is resting on a rug", "Stock markets fell sharply today"]).vectors
    assert float(cat @ kitten) > float(cat @ stocks) + 0.2


# Lengths and batches

def test_long_text_is_truncated_keeping_the_final_sep(embedder: Embedder, reference: BertReference) -> None:
    tokens = embedder.tokenize(LONG_TEXT)
    assert len(tokens) > embedder.max_tokens == 512
    result = embedder.embed([LONG_TEXT], truncate=True)
    assert result.prompt_tokens == 512
    kept = tokens[:511] + [102]
    assert float(result.vectors[0] @ reference.embed_ids(kept)) >= 0.999


def test_long_text_is_refused_without_truncation(embedder: Embedder) -> None:
    with pytest.raises(ContextLengthExceededError) as caught:
        embedder.embed(["short", LONG_TEXT], truncate=False)
    assert "input 1" in caught.value.message and str(embedder.count_tokens(LONG_TEXT)) in caught.value.message
    assert caught.value.hint


def test_batched_equals_one_at_a_time(embedder: Embedder) -> None:
    texts = [f"Document {i}: " + " ".join(["sentence", "about", "topic", str(i * 7)] * (2 + i % 9))
             for i in range(40)]
    assert sum(embedder.count_tokens(t) for t in texts) > 2 * 512  # several llama.cpp calls
    together = embedder.embed(texts).vectors
    alone = np.stack([embedder.embed([text]).vectors[0] for text in texts])
    # Not bit-identical: llama.cpp's flash attention keeps V in F16, and its kernels and
    # summation order depend on the batch; measured max 1.2e-4 on 2 AVX2 cores.
    assert np.abs(together - alone).max() < 3e-4
    assert (together * alone).sum(axis=1).min() > 0.99999
    assert len({round(float(v[0]), 6) for v in together}) == 40  # no row copied from another
    assert np.array_equal(embedder.embed(texts).vectors, together)  # nothing carried over between calls


def test_threads_take_turns(embedder: Embedder) -> None:
    texts = [f"thread test number {i}, with some words" for i in range(24)]
    expected = {part: embedder.embed(texts[part::4]).vectors for part in range(4)}
    results: dict[int, np.ndarray] = {}

    def run(part: int) -> None:
        results[part] = embedder.embed(texts[part::4]).vectors

    threads = [threading.Thread(target=run, args=(part,)) for part in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for part in range(4):
        assert np.array_equal(results[part], expected[part])  # the same batch gives the same bits


def test_empty_input_gives_no_rows(embedder: Embedder) -> None:
    result = embedder.embed([])
    assert result.vectors.shape == (0, 384) and result.prompt_tokens == 0


def test_closed_embedder_refuses_work(gguf_path: Path) -> None:
    loaded = Embedder(gguf_path)
    assert loaded.n_embd == 384 and loaded.max_tokens == 512
    loaded.close()
    with pytest.raises(EngineError):
        loaded.embed(["hello"])
    loaded.close()  # twice is harmless
