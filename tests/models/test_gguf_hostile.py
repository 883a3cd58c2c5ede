"""Hostile model files at the store's door: each refused at import with a clear reason, the store unchanged.

gguf_corpus/ holds small GGUF files (3-8 KB) made from tests/ggufs.py's tiny dense model: its header with
the vocabulary, token types and merges cut to 16 items, and its two F32 norm tensors with their data
(base.gguf, which imports). Every other file tells one lie in that base: a vocabulary or token of absurd
size, a tokenizer array of the wrong type or length, a tensor whose shape or offset does not fit the file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import HOMELLM, STARTUP_SECONDS

from homellm.errors import InvalidModelFileError
from homellm.models.store import Store

CORPUS = Path(__file__).parent / "gguf_corpus"
# Each file, and what its refusal must say. "(new)": the reader accepted it before the tokenizer checks.
REFUSALS = {
    "vocabulary-claims-a-billion-tokens.gguf": "the vocabulary (tokenizer.ggml.tokens) claims 1000000000 tokens",
    "token-length-2-63.gguf": f"item 0 of 'tokenizer.ggml.tokens' is {1 << 63} bytes long; homellm accepts at most",
    # (new) llama.cpp builds tables over every token's text
    "token-of-5000-bytes.gguf": "item 3 of 'tokenizer.ggml.tokens' is 5000 bytes long",
    # (new) llama.cpp reads token types as int32 and scores as float32, one per token
    "token-types-as-uint8.gguf": "tokenizer.ggml.token_type is stored as an array of uint8, not as an array of int32",
    "fewer-token-types-than-tokens.gguf": "tokenizer.ggml.token_type has 10 items for 16 tokens",  # (new)
    "vocab-size-a-billion.gguf": "llama.vocab_size claims 1000000000 tokens",  # (new) and the planner used it
    "tensor-larger-than-the-file.gguf": "tensor output_norm.weight (256000 bytes at offset 0) lies outside the file",
    "tensors-overlap.gguf": "output_norm.weight (bytes 0 to 256) and blk.0.attn_norm.weight (from byte 128) overlap",
    "zero-dimension.gguf": "tensor output_norm.weight has an empty dimension [64, 0]",
    "negative-dimension.gguf": f"tensor output_norm.weight has a dimension of {(1 << 64) - 1}, negative as a signed",
    "odd-alignment.gguf": "general.alignment is 33, not a power of two",
}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "home")


def snapshot(store: Store) -> tuple[list[str], list[str]]:
    """What a refusal must leave unchanged: the names and every file under blobs/."""
    return [m.name for m in store.list()], sorted(p.name for p in store.blobs.iterdir())


def test_the_corpus_is_the_listed_files():
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted([*REFUSALS, "base.gguf"])
    assert all(p.stat().st_size < 10_000 for p in CORPUS.iterdir())


def test_the_base_of_the_corpus_imports(store: Store):
    model = store.add([CORPUS / "base.gguf"], "base:latest", "test")
    assert model.facts.architecture == "llama" and model.facts.parameters == 128  # two norms of 64


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_hostile_file_is_refused_at_import_and_the_store_is_unchanged(store: Store, name: str):
    before = snapshot(store)
    with pytest.raises(InvalidModelFileError) as info:
        store.add([CORPUS / name], "hostile:latest", "test")
    assert info.value.message.startswith(f"{name} is not a valid GGUF file: ")
    assert REFUSALS[name] in info.value.message and info.value.hint
    assert snapshot(store) == before


def test_a_moved_hostile_file_is_refused_and_deleted(store: Store, tmp_path: Path):
    """A download is moved into the store before it is read: refused, it must not stay there."""
    download = tmp_path / "download.gguf"
    shutil.copy(CORPUS / "token-types-as-uint8.gguf", download)
    before = snapshot(store)
    with pytest.raises(InvalidModelFileError, match="stored as an array of uint8"):
        store.add([download], "hostile:latest", "hub:someone/model", move=True)
    assert snapshot(store) == before and not download.exists()


def test_import_command_refuses_a_vocabulary_of_a_billion_tokens(tmp_path: Path):
    env = {**os.environ, "HOMELLM_HOME": str(tmp_path / "home")}
    result = subprocess.run([HOMELLM, "import", str(CORPUS / "vocabulary-claims-a-billion-tokens.gguf")],
                            capture_output=True, text=True, timeout=STARTUP_SECONDS, env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error:") and "claims 1000000000 tokens" in line
