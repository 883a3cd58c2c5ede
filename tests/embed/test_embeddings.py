"""The built-in embedding model: our converter, llama.cpp's BERT, and a numpy BERT on the original weights agree."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from bert_reference import BertReference
from safetensors.numpy import load_file, save_file

from homellm.embed import EMBEDDING_NAME, Embedder, ensure_embedding_model, minilm
from homellm.embed.minilm import convert_bert, minilm_dir
from homellm.errors import ContextLengthExceededError, EngineError, ModelLoadError
from homellm.models.gguf import read_model_facts
from homellm.models.store import Store

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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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


# Conversion and the store

def test_ensure_converts_once_into_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path)
    killed, running = tmp_path / ".convert-killed", tmp_path / ".convert-running"
    for folder in (killed, running):
        folder.mkdir()
        (folder / "all-minilm-l6-v2.gguf").write_bytes(b"GGUF half")
    os.utime(killed, (time.time() - 2 * 86400, time.time() - 2 * 86400))
    path = ensure_embedding_model(store)
    assert not killed.exists() and running.exists()  # another process may still be converting there
    shutil.rmtree(running)
    before = path.stat()
    listed = {model.name: model for model in store.list()}
    assert listed[EMBEDDING_NAME].path == path
    assert listed[EMBEDDING_NAME].facts.architecture == "bert"
    assert listed[EMBEDDING_NAME].facts.embedding_length == 384

    def no_second_conversion(src: Path, out: Path) -> Path:
        raise AssertionError("converted again")

    monkeypatch.setattr(minilm, "convert_bert", no_second_conversion)
    assert ensure_embedding_model(Store(tmp_path)) == path
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not list(tmp_path.glob(".convert-*"))


def test_two_processes_converting_at_once_share_one_model(tmp_path: Path) -> None:
    paths: list[Path] = []

    def run() -> None:
        paths.append(ensure_embedding_model(Store(tmp_path)))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(paths) == 2 and paths[0] == paths[1] and paths[0].is_file()
    assert [m.name for m in Store(tmp_path).list()].count(EMBEDDING_NAME) == 1
    assert len(list((tmp_path / "blobs").glob("sha256-*"))) == 1
    assert not list(tmp_path.glob(".convert-*"))


def test_converted_header_is_llama_cpp_bert(gguf_path: Path) -> None:
    facts = read_model_facts(gguf_path)
    meta = facts.metadata
    assert facts.architecture == "bert" and facts.block_count == 6 and facts.context_length == 512
    assert facts.head_count == 12 and facts.feed_forward_length == 1536 and facts.vocab_size == 30522
    assert meta["bert.attention.causal"] is False and meta["bert.pooling_type"] == 1
    assert meta["tokenizer.ggml.model"] == "bert" and meta["tokenizer.ggml.token_type_count"] == 2
    assert (meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.seperator_token_id"]) == (101, 102)


def _model_copy(tmp_path: Path, tensors: dict[str, np.ndarray]) -> Path:
    """The model folder with other weights; the small files are copied."""
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "vocab.txt", "special_tokens_map.json", "tokenizer.json"):
        shutil.copy(minilm_dir() / name, folder / name)
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def test_bert_prefixed_names_convert_to_the_same_file(tmp_path: Path, gguf_path: Path) -> None:
    weights = load_file(str(minilm_dir() / "model.safetensors"))
    folder = _model_copy(tmp_path, {f"bert.{name}": value for name, value in weights.items()})
    # The copy lacks 1_Pooling/config.json: mean pooling is the default, so the bytes agree.
    out = convert_bert(folder, tmp_path / "prefixed.gguf")
    assert _sha256(out) == _sha256(gguf_path)


def test_missing_tensor_is_named_and_leaves_no_file(tmp_path: Path) -> None:
    weights = load_file(str(minilm_dir() / "model.safetensors"))
    del weights["encoder.layer.3.output.dense.weight"]
    folder = _model_copy(tmp_path, weights)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ModelLoadError, match=r"encoder\.layer\.3\.output\.dense\.weight"):
        convert_bert(folder, out / "broken.gguf")
    assert not list(out.iterdir())
