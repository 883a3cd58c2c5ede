"""GGUF files made by tests: copies of the built-in model with changed metadata, and tiny random models."""

from __future__ import annotations

import functools
import mmap
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from homellm.models.builtin import builtin_model_path

# gguf's GGUFReader and GGUFWriter took 2.5 s to copy the built-in model on 2 cores (6.7 s with the
# other core busy), most of it making a numpy view of each of its 100,000 vocabulary strings, and
# a dozen tests copy it: copies here move the header's fields as bytes, and the tensors' data whole.
_STRING, _ARRAY = gguf.GGUFValueType.STRING, gguf.GGUFValueType.ARRAY
_SCALAR_FORMATS = {
    gguf.GGUFValueType.UINT8: "B", gguf.GGUFValueType.INT8: "b", gguf.GGUFValueType.UINT16: "H",
    gguf.GGUFValueType.INT16: "h", gguf.GGUFValueType.UINT32: "I", gguf.GGUFValueType.INT32: "i",
    gguf.GGUFValueType.FLOAT32: "f", gguf.GGUFValueType.BOOL: "?", gguf.GGUFValueType.UINT64: "Q",
    gguf.GGUFValueType.INT64: "q", gguf.GGUFValueType.FLOAT64: "d",
}
_Value = str | float | int | bool | list


@dataclass(frozen=True)
class _Layout:
    """Where the parts of a GGUF file lie, in bytes."""

    version: int
    tensor_count: int
    fields: dict[str, tuple[int, int]]  # key: where the field starts and where its value ends
    tensor_infos: tuple[int, int]
    data_start: int  # the tensors' data, to the end of the file


def copy_with_metadata(src: Path, dst: Path, overrides: dict[str, str | float | int | np.uint32]) -> Path:
    """Write `dst`: the tensors and metadata of `src`, with fields replaced or added (string, float32, int32, or
    uint32 given as numpy.uint32); replaced and added fields come last."""
    assert "general.alignment" not in overrides, "the tensors' data is copied as it lies"
    with src.open("rb") as source, mmap.mmap(source.fileno(), 0, access=mmap.ACCESS_READ) as data:
        layout = _layout(data)
        kept = [data[start:end] for key, (start, end) in layout.fields.items() if key not in overrides]
        added = [_encoded_field(key, value) for key, value in overrides.items()]
        header = b"".join([b"GGUF", struct.pack("<IQQ", layout.version, layout.tensor_count, len(kept) + len(added)),
                           *kept, *added, data[slice(*layout.tensor_infos)]])
        alignment = _alignment(data, layout.fields)
        with dst.open("wb") as out:
            out.write(header + bytes(-len(header) % alignment))
            source.seek(layout.data_start)
            shutil.copyfileobj(source, out, 16 << 20)
    return dst


def _layout(data: mmap.mmap) -> _Layout:
    """The layout of a well-formed GGUF file (version 2 or 3)."""
    assert data[:4] == b"GGUF", "not a GGUF file"
    version, tensor_count, field_count = struct.unpack_from("<IQQ", data, 4)
    fields: dict[str, tuple[int, int]] = {}
    pos = 24
    for _ in range(field_count):
        start = pos
        key, pos = _value(data, pos, _STRING)
        (value_type,) = struct.unpack_from("<I", data, pos)
        _, pos = _value(data, pos + 4, gguf.GGUFValueType(value_type))
        fields[key] = (start, pos)
    infos_start = pos
    for _ in range(tensor_count):
        _, pos = _value(data, pos, _STRING)
        (n_dims,) = struct.unpack_from("<I", data, pos)
        pos += 4 + 8 * n_dims + 4 + 8  # the dimensions, the type and the data offset
    return _Layout(version, tensor_count, fields, (infos_start, pos), pos + -pos % _alignment(data, fields))


def _alignment(data: mmap.mmap, fields: dict[str, tuple[int, int]]) -> int:
    """The alignment of the tensors' data: `general.alignment`, or GGUF's default."""
    if "general.alignment" not in fields:
        return gguf.GGUF_DEFAULT_ALIGNMENT
    return _field(data, fields["general.alignment"][0])[1]


def _field(data: mmap.mmap, start: int) -> tuple[str, _Value, gguf.GGUFValueType, gguf.GGUFValueType | None]:
    """The field at `start`: its key, value, type and, for an array, the type of its items."""
    key, pos = _value(data, start, _STRING)
    (value_type,) = struct.unpack_from("<I", data, pos)
    main_type = gguf.GGUFValueType(value_type)
    sub_type = gguf.GGUFValueType(struct.unpack_from("<I", data, pos + 4)[0]) if main_type == _ARRAY else None
    return key, _value(data, pos + 4, main_type)[0], main_type, sub_type


def _value(data: mmap.mmap, pos: int, value_type: gguf.GGUFValueType) -> tuple[_Value, int]:
    """The value of `value_type` at `pos`, and where it ends."""
    if value_type == _STRING:
        (length,) = struct.unpack_from("<Q", data, pos)
        return data[pos + 8:pos + 8 + length].decode("utf-8"), pos + 8 + length
    if value_type == _ARRAY:
        item_type, count = struct.unpack_from("<IQ", data, pos)
        pos += 12
        item_format = _SCALAR_FORMATS.get(gguf.GGUFValueType(item_type))
        if item_format is not None:  # numbers in one read
            end = pos + count * struct.calcsize(item_format)
            return list(struct.unpack_from(f"<{count}{item_format}", data, pos)), end
        items = []
        for _ in range(count):
            item, pos = _value(data, pos, gguf.GGUFValueType(item_type))
            items.append(item)
        return items, pos
    item_format = _SCALAR_FORMATS[value_type]
    return struct.unpack_from(f"<{item_format}", data, pos)[0], pos + struct.calcsize(item_format)


def _encoded_field(key: str, value: str | float | int | np.uint32) -> bytes:
    """A field as GGUF stores it: uint32 for numpy.uint32 (llama.cpp reads hyperparameters as u32),
    float32 for a float, int32 for an int, else a string."""
    encoded_key = key.encode("utf-8")
    head = struct.pack("<Q", len(encoded_key)) + encoded_key
    if isinstance(value, np.uint32):
        return head + struct.pack("<II", gguf.GGUFValueType.UINT32, int(value))
    if isinstance(value, float):
        return head + struct.pack("<If", gguf.GGUFValueType.FLOAT32, value)
    if isinstance(value, int):
        return head + struct.pack("<Ii", gguf.GGUFValueType.INT32, value)
    text = str(value).encode("utf-8")
    return head + struct.pack("<IQ", _STRING, len(text)) + text


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
    with builtin_model_path().open("rb") as source, mmap.mmap(source.fileno(), 0, access=mmap.ACCESS_READ) as data:
        layout = _layout(data)
        fields = tuple(_field(data, start) for key, (start, _) in layout.fields.items() if key.startswith("tokenizer."))
    n_vocab = len(next(value for key, value, _, _ in fields if key == "tokenizer.ggml.tokens"))
    return n_vocab, fields


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
