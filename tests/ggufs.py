"""GGUF files made by tests: copies of the built-in model with changed metadata, and tiny random models."""

from __future__ import annotations

import functools
from pathlib import Path

import gguf
import numpy as np

from homellm.models.builtin import builtin_model_path

# Fields the writer produces itself.
_WRITER_FIELDS = ("GGUF.", "general.architecture")


def copy_with_metadata(src: Path, dst: Path, overrides: dict[str, str | float | int | np.uint32]) -> Path:
    """Write `dst`: the tensors and metadata of `src`, with fields replaced or added (string, float32, int32, or
    uint32 given as numpy.uint32)."""
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(dst, arch)
    for name, field in reader.fields.items():
        if name.startswith(_WRITER_FIELDS) or name in overrides:
            continue
        main_type = field.types[0]
        sub_type = field.types[-1] if main_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), main_type, sub_type)
    for name, value in overrides.items():
        if isinstance(value, np.uint32):  # llama.cpp reads hyperparameters as u32
            writer.add_uint32(name, int(value))
        elif isinstance(value, float):
            writer.add_float32(name, value)
        elif isinstance(value, int):
            writer.add_int32(name, value)
        else:
            writer.add_string(name, value)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst


# Tiny random-weight models that llama.cpp loads and runs: fast stand-ins for real ones.
TINY_EMBD = 64
TINY_HEADS = 4
TINY_HEADS_KV = 2
TINY_HEAD_DIM = TINY_EMBD // TINY_HEADS
TINY_FF = 128
TINY_LAYERS = 2
TINY_CTX = 2048
TINY_EXPERTS = 4
TINY_EXPERTS_USED = 2
TINY_EXPERT_FF = 64
# Q8_0 rather than F16: half the bytes, and every input width here is a multiple of its block (32).
_MATRIX_TYPE = gguf.GGMLQuantizationType.Q8_0
_Field = tuple[str, object, gguf.GGUFValueType, gguf.GGUFValueType | None]


@functools.cache
def _builtin_tokenizer() -> tuple[int, tuple[_Field, ...]]:
    """The built-in model's vocabulary size and `tokenizer.*` fields, read once per process."""
    reader = gguf.GGUFReader(builtin_model_path())
    fields = []
    for name, field in reader.fields.items():
        if not name.startswith("tokenizer."):
            continue
        main_type = field.types[0]
        sub_type = field.types[-1] if main_type == gguf.GGUFValueType.ARRAY else None
        fields.append((name, field.contents(), main_type, sub_type))
    n_vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    return n_vocab, tuple(fields)


def _with_duplicate_token(field: _Field) -> _Field:
    name, tokens, main_type, sub_type = field
    tokens = list(tokens)
    tokens[101] = tokens[100]
    return name, tokens, main_type, sub_type


def _with_swapped_tokens(field: _Field) -> _Field:
    name, tokens, main_type, sub_type = field
    tokens = list(tokens)
    tokens[100], tokens[101] = tokens[101], tokens[100]
    return name, tokens, main_type, sub_type


class _Weights:
    """Deterministic random tensors added to a writer; shapes are numpy order (llama.cpp's reversed)."""

    def __init__(self, writer: gguf.GGUFWriter, seed: int) -> None:
        self.writer = writer
        self.rng = np.random.default_rng(seed)

    def matrix(self, name: str, *shape: int) -> None:
        """A Q8_0 weight; the last dimension is the input width."""
        data = self.rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
        self.writer.add_tensor(name, gguf.quants.quantize(data, _MATRIX_TYPE), raw_dtype=_MATRIX_TYPE)

    def norm(self, name: str, width: int) -> None:
        """An F32 RMS-norm weight of ones, so norms leave activations at unit scale."""
        self.writer.add_tensor(name, np.ones(width, dtype=np.float32))


def _start(path: Path, arch: str, name: str, seed: int, split_max_tensors: int = 0,
           duplicate_token: bool = False, embd: int = TINY_EMBD, ff: int = TINY_FF,
           swapped_tokens: bool = False) -> tuple[gguf.GGUFWriter, _Weights]:
    """A writer with the general, shape and tokenizer keys every tiny model shares, and its embeddings."""
    n_vocab, tokenizer_fields = _builtin_tokenizer()
    change = _with_duplicate_token if duplicate_token else _with_swapped_tokens if swapped_tokens else None
    if change is not None:
        tokenizer_fields = tuple(change(f) if f[0] == "tokenizer.ggml.tokens" else f for f in tokenizer_fields)
    writer = gguf.GGUFWriter(path, arch, split_max_tensors=split_max_tensors)
    writer.add_name(name)
    writer.add_type("model")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_vocab_size(n_vocab)
    writer.add_context_length(TINY_CTX)
    writer.add_embedding_length(embd)
    writer.add_feed_forward_length(ff)
    writer.add_block_count(TINY_LAYERS)
    writer.add_head_count(TINY_HEADS)
    writer.add_head_count_kv(TINY_HEADS_KV)
    writer.add_rope_dimension_count(embd // TINY_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    for key, value, main_type, sub_type in tokenizer_fields:
        writer.add_key_value(key, value, main_type, sub_type)
    weights = _Weights(writer, seed)
    # No output.weight: llama.cpp ties the output head to token_embd, which halves the file.
    weights.matrix("token_embd.weight", n_vocab, embd)
    weights.norm("output_norm.weight", embd)
    return writer, weights


def _add_attention(weights: _Weights, block: int, qk_norm: bool = False, embd: int = TINY_EMBD) -> None:
    """One block's grouped-query attention and the norms around it."""
    head_dim = embd // TINY_HEADS
    kv_width = TINY_HEADS_KV * head_dim
    weights.norm(f"blk.{block}.attn_norm.weight", embd)
    weights.matrix(f"blk.{block}.attn_q.weight", TINY_HEADS * head_dim, embd)
    weights.matrix(f"blk.{block}.attn_k.weight", kv_width, embd)
    weights.matrix(f"blk.{block}.attn_v.weight", kv_width, embd)
    weights.matrix(f"blk.{block}.attn_output.weight", embd, TINY_HEADS * head_dim)
    if qk_norm:
        weights.norm(f"blk.{block}.attn_q_norm.weight", head_dim)
        weights.norm(f"blk.{block}.attn_k_norm.weight", head_dim)
    weights.norm(f"blk.{block}.ffn_norm.weight", embd)


def _finish(writer: gguf.GGUFWriter, path: Path) -> Path:
    """Write everything added so far to `path`."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_tiny_dense(path: Path, split_max_tensors: int = 0, duplicate_token: bool = False,
                     embd: int = TINY_EMBD, ff: int = TINY_FF, chat_template: str | None = None,
                     swapped_tokens: bool = False) -> Path:
    """Write a 2-layer random `llama` model with the built-in vocabulary (about 5 MB) to `path`.

    With `split_max_tensors`, it is written as shards `<stem>-0000N-of-0000M.gguf` beside `path`.
    With `duplicate_token`, two tokens of the vocabulary are the same string: a well-formed file
    on which llama.cpp aborts the process (GGML_ASSERT in llama-vocab.cpp). `embd` and `ff` widen
    it (the i-quants need rows of 256). `chat_template` is written as `tokenizer.chat_template`.
    With `swapped_tokens`, two tokens trade places: a vocabulary that differs from the built-in
    one in ids only, as another family's would.
    """
    writer, weights = _start(path, "llama", "tiny-dense", seed=0, split_max_tensors=split_max_tensors,
                             duplicate_token=duplicate_token, embd=embd, ff=ff, swapped_tokens=swapped_tokens)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for block in range(TINY_LAYERS):
        _add_attention(weights, block, embd=embd)
        weights.matrix(f"blk.{block}.ffn_gate.weight", ff, embd)
        weights.matrix(f"blk.{block}.ffn_up.weight", ff, embd)
        weights.matrix(f"blk.{block}.ffn_down.weight", embd, ff)
    return _finish(writer, path)


def write_tiny_moe(path: Path) -> Path:
    """Write a 2-layer random `qwen3moe` model, 4 experts with 2 used per token, to `path`."""
    writer, weights = _start(path, "qwen3moe", "tiny-moe", seed=1)
    writer.add_expert_count(TINY_EXPERTS)
    writer.add_expert_used_count(TINY_EXPERTS_USED)
    writer.add_expert_feed_forward_length(TINY_EXPERT_FF)
    for block in range(TINY_LAYERS):
        _add_attention(weights, block, qk_norm=True)
        # The router stays F32, as llama.cpp's own quantizer leaves it, and at unit scale so that
        # different tokens pick different experts.
        router = weights.rng.standard_normal((TINY_EXPERTS, TINY_EMBD), dtype=np.float32)
        writer.add_tensor(f"blk.{block}.ffn_gate_inp.weight", router)
        weights.matrix(f"blk.{block}.ffn_gate_exps.weight", TINY_EXPERTS, TINY_EXPERT_FF, TINY_EMBD)
        weights.matrix(f"blk.{block}.ffn_up_exps.weight", TINY_EXPERTS, TINY_EXPERT_FF, TINY_EMBD)
        weights.matrix(f"blk.{block}.ffn_down_exps.weight", TINY_EXPERTS, TINY_EMBD, TINY_EXPERT_FF)
    return _finish(writer, path)


def write_tiny_dense_split(path: Path, max_tensors: int = 8) -> list[Path]:
    """The tiny dense model as a split GGUF; returns its shards in order."""
    write_tiny_dense(path, split_max_tensors=max_tensors)
    return sorted(path.parent.glob(f"{path.stem}-*-of-*.gguf"))


def write_unknown_architecture(path: Path) -> Path:
    """A well-formed GGUF that passes homellm's checks but that llama.cpp cannot load."""
    writer = gguf.GGUFWriter(path, "nosucharch")
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    return _finish(writer, path)


def write_imatrix(path: Path, model: Path) -> Path:
    """An importance matrix in llama-imatrix's GGUF format for `model`: every column equally important."""
    import numpy as np

    from homellm.models.gguf import read_header

    writer = gguf.GGUFWriter(str(path), arch="imatrix")
    writer.add_uint32("imatrix.chunk_count", 1)
    writer.add_uint32("imatrix.chunk_size", 512)
    for tensor in read_header(model).tensors:
        if len(tensor.shape) == 2 and tensor.name.endswith(".weight"):
            writer.add_tensor(tensor.name + ".in_sum2", np.full((1, tensor.shape[0]), 3.0, dtype=np.float32))
            writer.add_tensor(tensor.name + ".counts", np.full((1, 1), 3.0, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
