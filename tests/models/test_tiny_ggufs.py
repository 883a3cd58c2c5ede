"""The tiny test GGUFs load in llama.cpp, generate, and share the built-in model's vocabulary."""

from collections.abc import Iterator
from pathlib import Path

import gguf
import llama_cpp
import pytest
from ggufs import write_tiny_dense, write_tiny_moe

SENTENCE = b"The quick brown fox jumps over the lazy dog, twice."


@pytest.fixture(scope="module")
def builtin_vocab(builtin_path: Path) -> Iterator[llama_cpp.Llama]:
    """The built-in model's tokenizer alone, without its weights."""
    llm = llama_cpp.Llama(str(builtin_path), vocab_only=True, verbose=False)
    yield llm
    llm.close()


@pytest.fixture(scope="module", params=["tiny_dense_path", "tiny_moe_path"])
def tiny(request: pytest.FixtureRequest) -> Iterator[llama_cpp.Llama]:
    """Each tiny model, loaded once."""
    llm = llama_cpp.Llama(str(request.getfixturevalue(request.param)), n_ctx=256, verbose=False)
    yield llm
    llm.close()


def test_generates_eight_tokens_greedily(tiny: llama_cpp.Llama):
    out = tiny.create_completion("The capital of France is", max_tokens=8, temperature=0)
    assert out["usage"]["completion_tokens"] == 8
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["choices"][0]["text"]


def test_vocabulary_is_the_builtin_one(tiny: llama_cpp.Llama, builtin_vocab: llama_cpp.Llama):
    assert tiny.n_vocab() == builtin_vocab.n_vocab() == 49152
    tokens = tiny.tokenize(SENTENCE)
    assert tokens == builtin_vocab.tokenize(SENTENCE)
    assert tiny.detokenize(tokens).strip() == SENTENCE
    assert tiny.metadata["tokenizer.chat_template"] == builtin_vocab.metadata["tokenizer.chat_template"]


def test_metadata_as_llama_cpp_reads_it(tiny: llama_cpp.Llama):
    arch = tiny.metadata["general.architecture"]
    assert (arch, tiny.metadata["general.name"]) in {("llama", "tiny-dense"), ("qwen3moe", "tiny-moe")}
    assert tiny.metadata[f"{arch}.block_count"] == "2"
    assert tiny.metadata["general.file_type"] == str(int(gguf.LlamaFileType.MOSTLY_Q8_0))


def test_moe_metadata_and_expert_tensors(tiny_moe_path: Path):
    reader = gguf.GGUFReader(tiny_moe_path)  # slow (about 2 s): it parses the whole vocabulary
    assert reader.fields["qwen3moe.expert_count"].contents() == 4
    assert reader.fields["qwen3moe.expert_used_count"].contents() == 2
    shapes = {tensor.name: tensor.shape.tolist() for tensor in reader.tensors}
    for block in range(2):
        assert shapes[f"blk.{block}.ffn_gate_inp.weight"] == [64, 4]
        for kind in ("gate", "up", "down"):
            assert shapes[f"blk.{block}.ffn_{kind}_exps.weight"][-1] == 4
    assert "output.weight" not in shapes  # tied to token_embd


@pytest.mark.parametrize("write", [write_tiny_dense, write_tiny_moe])
def test_writers_are_deterministic(write, tmp_path: Path):
    first = write(tmp_path / "a.gguf").read_bytes()
    assert write(tmp_path / "b.gguf").read_bytes() == first
    assert len(first) < 15_000_000
