"""The built-in embedding model's converter: all-MiniLM-L6-v2 to a llama.cpp BERT GGUF, stored once."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from homellm.errors import ModelLoadError
from homellm.models import minilm
from homellm.models.gguf import read_model_facts
from homellm.models.minilm import (
    EMBEDDING_NAME,
    convert_bert,
    ensure_embedding_model,
    minilm_dir,
)
from homellm.models.store import Store


@pytest.fixture(scope="module")
def gguf_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 converted once for this module."""
    return convert_bert(minilm_dir(), tmp_path_factory.mktemp("minilm") / "minilm.gguf")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
