"""The facts inside a GGUF file, read from an untrusted header in bounded time and memory.

GGUF files come from strangers, and llama.cpp's own parser has had overflow bugs
on hostile headers (CVE-2025-49847, CVE-2026-27940, CVE-2026-21869). This module
checks every count, length, type and offset against the file before anything
else reads it; a file it refuses never reaches llama.cpp. It reads through a
memory map with explicit bounds instead of `gguf.GGUFReader`, which trusts the
counts it reads (a hostile header ends in whatever numpy error comes first, not
a reason) and decodes every token of the vocabulary (2 s for the built-in
model); the type tables (quant block sizes, value types, file types) are the
`gguf` package's.

Bounds, whatever the header claims (tests/models/test_gguf_fuzz.py holds the
reader to them on mutated real headers, measuring memory with tracemalloc):

- Errors: any file either reads or raises `InvalidModelFileError`, whose
  message names the file, the fault and where it is (key, item, tensor, byte).
- Memory: a count read from the file sizes nothing before the bytes behind it
  are checked, and what is kept is capped by the limits below, not by the
  file's size. Reading a header takes at most READ_MEMORY_BASE_BYTES +
  READ_MEMORY_PER_BYTE bytes per byte of the file read (20 MiB for a 1 MB
  header), and never more than MAX_READ_MEMORY_BYTES (64 MiB; the worst case,
  every limit filled at once, measures 44 MiB). A real header takes far less:
  0.1 MiB for the built-in model's 1.8 MB one.
- Work: each step of a loop consumes at least 8 bytes of the file, and the
  loops take at most MAX_KEYS + MAX_ARRAY_STRINGS + MAX_TENSORS steps in all
  (about 4.3 million, a second or two); a count that the file cannot hold is
  refused before its loop starts. A real header reads in about 0.02 s.
"""

from __future__ import annotations

import math
import mmap
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from homellm.errors import InvalidModelFileError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
# Far above any published model (DeepSeek-V3 has about 1,100 tensors and 60 keys), far below a hostile count.
MAX_TENSORS = 1 << 16
MAX_KEYS = 1 << 12
# The format allows keys of 65,535 bytes; no model's is near 100, and 4,096 keys of 64 KiB would be 256 MiB.
MAX_KEY_BYTES = 1 << 10
# Strings in all arrays together: a 262k-token vocabulary and its merges fit many times over.
MAX_ARRAY_STRINGS = 1 << 22
# What is kept in memory across all keys; past it, values are checked and skipped.
MAX_KEPT_ITEMS = 1 << 16
# Bytes of string values kept across all keys (chat templates, licenses); past it, strings are skipped.
MAX_KEPT_TEXT_BYTES = 8 << 20
# Metadata passed on with the facts (and stored): short scalars only.
MAX_FACT_KEYS = 256
MAX_FACT_STRING = 1024
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_TENSOR_NAME_BYTES = 63  # GGML_MAX_NAME less its NUL
# Scalar strings longer than this (no real model has one) are checked but not kept.
MAX_KEPT_STRING_BYTES = 1 << 20
# Arrays longer than this (token lists, merges) are checked but only their length is kept.
MAX_KEPT_ARRAY_ITEMS = 1024
# The largest published vocabulary (Gemma 3) has 262,144 tokens and its longest token a few hundred
# bytes; llama.cpp builds tables over every token's text, so a vocabulary past these is refused.
MAX_VOCAB = 1 << 21
MAX_TOKEN_BYTES = 1 << 12
# The memory bounds stated above, which the fuzz tests assert with tracemalloc.
MAX_READ_MEMORY_BYTES = 64 << 20
READ_MEMORY_BASE_BYTES = 4 << 20
READ_MEMORY_PER_BYTE = 16
_HEADER_BYTES = 24  # magic, version, tensor count, key count

_VT = gguf.GGUFValueType
_SCALARS: dict[int, str] = {
    _VT.UINT8: "<B", _VT.INT8: "<b", _VT.UINT16: "<H", _VT.INT16: "<h",
    _VT.UINT32: "<I", _VT.INT32: "<i", _VT.FLOAT32: "<f", _VT.BOOL: "<?",
    _VT.UINT64: "<Q", _VT.INT64: "<q", _VT.FLOAT64: "<d",
}
_U64 = struct.Struct("<Q")
_EXPERT_TENSOR = re.compile(r"\.ffn_[a-z_]*_exps\.")
# Keys llama.cpp reads with a typed getter that aborts the process on another type.
_REQUIRED_TYPES = {"general.alignment": _VT.UINT32, "split.no": _VT.UINT16, "split.count": _VT.UINT16,
                   "split.tensors.count": _VT.INT32, "general.architecture": _VT.STRING}
# The tokenizer's arrays, which llama.cpp indexes by token id: their item types, and the longest item.
_TOKENS = "tokenizer.ggml.tokens"
_TOKENIZER_ARRAYS = {_TOKENS: _VT.STRING, "tokenizer.ggml.merges": _VT.STRING,
                     "tokenizer.ggml.scores": _VT.FLOAT32, "tokenizer.ggml.token_type": _VT.INT32}
_PER_TOKEN_ARRAYS = ("tokenizer.ggml.scores", "tokenizer.ggml.token_type")
_LONGEST_ITEM = {_TOKENS: MAX_TOKEN_BYTES, "tokenizer.ggml.merges": 2 * MAX_TOKEN_BYTES + 1}  # "left right"


@dataclass(frozen=True)
class ArrayInfo:
    """A long array in the metadata: its item type and length, not its items."""

    item_type: str
    count: int


@dataclass(frozen=True, slots=True)  # slots: a header may hold 65,536 of them
class TensorInfo:
    """One tensor as the header describes it; `offset` is from the start of the data section."""

    name: str
    shape: tuple[int, ...]
    ggml_type: str
    offset: int
    nbytes: int

    @property
    def elements(self) -> int:
        """How many numbers the tensor holds."""
        count = 1
        for dim in self.shape:
            count *= dim
        return count


@dataclass(frozen=True)
class GGUFHeader:
    """A checked GGUF header: every tensor lies inside the file."""

    version: int
    metadata: dict[str, Any]
    types: dict[str, int]
    tensors: tuple[TensorInfo, ...]
    alignment: int
    data_offset: int
    file_size: int
    name: str = ""  # the file's name, for messages


# llama.cpp architectures that are encoders made for embeddings: they generate no text.
ENCODER_ARCHITECTURES = frozenset({
    "bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "modern-bert", "neo-bert",
    "eurobert", "t5encoder",
})

@dataclass(frozen=True)
class ModelFacts:
    """What the planner and `homellm show` need to know about a model file."""

    architecture: str
    general_name: str | None
    parameters: int
    block_count: int | None
    context_length: int | None
    embedding_length: int | None
    feed_forward_length: int | None
    head_count: int | None
    head_count_kv: int | None
    key_length: int | None
    value_length: int | None
    vocab_size: int | None
    file_type: str | None
    quant_mix: dict[str, int]
    tensor_bytes: int
    file_size: int
    expert_count: int | None = None
    expert_used_count: int | None = None
    expert_feed_forward_length: int | None = None
    expert_tensors: tuple[str, ...] = ()
    expert_bytes: int = 0
    sliding_window: int | None = None
    kv_lora_rank: int | None = None  # MLA (DeepSeek): the compressed KV width cached per token
    rope_dimension_count: int | None = None
    rope_freq_base: float | None = None
    rope_scaling_type: str | None = None
    rope_scaling_factor: float | None = None
    rope_original_context_length: int | None = None
    chat_template: bool = False
    split_count: int = 1
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_moe(self) -> bool:
        """Whether tokens are routed to a few of many experts."""
        return bool(self.expert_count and self.expert_count > 1)


class _Cursor:
    """Reads little-endian values from a memory map, refusing any read past the end."""

    def __init__(self, data: mmap.mmap | bytes, name: str) -> None:
        self.data = data
        self.size = len(data)
        self.pos = 0
        self.name = name
        self.array_strings_left = MAX_ARRAY_STRINGS
        self.keep_left = MAX_KEPT_ITEMS
        self.text_left = MAX_KEPT_TEXT_BYTES
        self.arrays: dict[str, tuple[int, int]] = {}  # key: item type and length of every array

    def fail(self, what: str) -> InvalidModelFileError:
        return InvalidModelFileError(
            f"{self.name} is not a valid GGUF file: {what}",
            hint="the file is corrupt, truncated or not a model; download it again from a trusted source",
        )

    def remaining(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n < 0 or n > self.remaining():
            raise self.fail(f"{what} runs past the end of the file (byte {self.pos}, needs {n})")

    def unpack(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n, what)
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += n
        return value

    def u32(self, what: str) -> int:
        return self.unpack("<I", what)

    def u64(self, what: str) -> int:
        return self.unpack("<Q", what)

    def string(self, what: str, limit: int) -> str | None:
        """A length-prefixed UTF-8 string; None when longer than `limit` (then skipped)."""
        length = self.u64(f"the length of {what}")
        self.need(length, f"{what} ({length} bytes)")
        if length > limit:
            self.pos += length
            return None
        raw = bytes(self.data[self.pos:self.pos + length])
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8") from None

    def value_string(self, what: str) -> str | None:
        """A string value, kept while the text budget lasts; None (skipped) past it or past its own limit."""
        start = self.pos
        text = self.string(what, limit=min(MAX_KEPT_STRING_BYTES, self.text_left))
        if text is not None:
            self.text_left -= self.pos - start - 8
        return text

    def skip_strings(self, count: int, key: str, longest: int | None) -> None:
        """Step over `count` length-prefixed strings, each checked against the file and `longest`.

        The hot loop of a header (a vocabulary and its merges are 100,000s of strings), so it
        formats no message unless it fails.
        """
        data, pos, size, unpack = self.data, self.pos, self.size, _U64.unpack_from
        for index in range(count):
            if pos + 8 > size:
                raise self.fail(f"the length of item {index} of {key!r} runs past the end of the file (byte {pos})")
            (length,) = unpack(data, pos)
            if longest is not None and length > longest:
                raise self.fail(f"item {index} of {key!r} is {length} bytes long; homellm accepts at most {longest}")
            if length > size - pos - 8:
                raise self.fail(f"item {index} of {key!r} ({length} bytes at byte {pos + 8}) "
                                "runs past the end of the file")
            pos += 8 + length
        self.pos = pos


def read_header(path: Path) -> GGUFHeader:
    """Read and check a GGUF header; a bad file raises `InvalidModelFileError` naming the fault."""
    name = path.name
    try:
        with path.open("rb") as file:
            size = path.stat().st_size
            if size < _HEADER_BYTES:
                raise _Cursor(b"", name).fail(f"only {size} bytes long")
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _parse(_Cursor(data, name))
    except OSError as exc:
        raise InvalidModelFileError(f"cannot read {path}: {exc.strerror}",
                                    hint="check the path and its permissions") from None
    except ValueError as exc:  # mmap of a file emptied since stat, or of something that is not a file
        raise InvalidModelFileError(f"cannot read {path}: {exc}",
                                    hint="check that it is a complete regular file") from None


def _parse(cur: _Cursor) -> GGUFHeader:
    magic = bytes(cur.data[0:4])
    if magic != GGUF_MAGIC:
        raise cur.fail(f"it starts with {magic!r}, not {GGUF_MAGIC!r}")
    cur.pos = 4
    version = cur.u32("the version")
    if version not in SUPPORTED_VERSIONS:
        raise cur.fail(f"version {version} is not supported (only {', '.join(map(str, SUPPORTED_VERSIONS))})")
    n_tensors = cur.u64("the tensor count")
    n_keys = cur.u64("the key count")
    # Each key needs at least 13 bytes and each tensor 29, so a count the file cannot hold is refused at once.
    _check_count(cur, n_keys, MAX_KEYS, 13, "keys")
    _check_count(cur, n_tensors, MAX_TENSORS, 29, "tensors")
    metadata, types = _read_metadata(cur, n_keys)
    for key, wanted in _REQUIRED_TYPES.items():
        if key in types and types[key] != wanted:
            raise cur.fail(f"{key} is stored as {_type_name(types[key])}, not {_type_name(wanted)}")
    _check_tokenizer(cur, metadata, types)
    alignment = metadata.get("general.alignment", gguf.GGUF_DEFAULT_ALIGNMENT)
    if alignment <= 0 or alignment & (alignment - 1):
        raise cur.fail(f"general.alignment is {alignment!r}, not a power of two")
    tensors = [_read_tensor_info(cur, index) for index in range(n_tensors)]
    data_offset = -(-cur.pos // alignment) * alignment
    if data_offset > cur.size:
        raise cur.fail(f"the tensor data section starts at byte {data_offset}, past the end of the file")
    _place_tensors(cur, tensors, alignment, cur.size - data_offset)
    return GGUFHeader(version, metadata, types, tuple(tensors), alignment, data_offset, cur.size, cur.name)


def _check_count(cur: _Cursor, count: int, limit: int, min_bytes: int, what: str) -> None:
    if count > limit:
        raise cur.fail(f"the header claims {count} {what}; homellm accepts at most {limit}")
    if count * min_bytes > cur.remaining():
        raise cur.fail(f"the header claims {count} {what}, more than a {cur.size}-byte file can hold")


def _read_metadata(cur: _Cursor, n_keys: int) -> tuple[dict[str, Any], dict[str, int]]:
    metadata: dict[str, Any] = {}
    types: dict[str, int] = {}
    for index in range(n_keys):
        key = cur.string(f"key {index}", limit=MAX_KEY_BYTES)
        if key is None:
            raise cur.fail(f"key {index} is longer than {MAX_KEY_BYTES} bytes")
        if "\0" in key:
            raise cur.fail(f"key {key!r} contains a NUL byte")
        if key in metadata:
            raise cur.fail(f"the key {key!r} appears twice")
        types[key] = cur.u32(f"the type of {key}")
        metadata[key] = _read_value(cur, types[key], key)
    return metadata, types


def _type_name(value_type: int) -> str:
    try:
        return _VT(value_type).name.lower()
    except ValueError:
        return f"type {value_type}"


def _read_value(cur: _Cursor, value_type: int, key: str) -> Any:
    if value_type in _SCALARS:
        return cur.unpack(_SCALARS[value_type], key)
    if value_type == _VT.STRING:
        return cur.value_string(key)
    if value_type == _VT.ARRAY:
        return _read_array(cur, key)
    raise cur.fail(f"the key {key!r} has unknown value type {value_type}")


def _read_array(cur: _Cursor, key: str) -> Any:
    item_type = cur.u32(f"the item type of {key}")
    count = cur.u64(f"the length of {key}")
    if item_type == _VT.ARRAY:
        raise cur.fail(f"the key {key!r} is an array of arrays")
    if key == _TOKENS and count > MAX_VOCAB:
        raise cur.fail(f"the vocabulary ({key}) claims {count} tokens; homellm accepts at most {MAX_VOCAB}")
    cur.arrays[key] = (item_type, count)
    if item_type == _VT.STRING:
        return _read_string_array(cur, key, count)
    if item_type not in _SCALARS:
        raise cur.fail(f"the key {key!r} is an array of unknown type {item_type}")
    fmt = _SCALARS[item_type]
    width = struct.calcsize(fmt)
    cur.need(count * width, f"the {count} items of {key!r}")
    if not _keep(cur, count):
        cur.pos += count * width
        return ArrayInfo(_VT(item_type).name.lower(), count)
    items = list(struct.unpack_from(f"<{count}{fmt[1]}", cur.data, cur.pos))
    cur.pos += count * width
    return items


def _read_string_array(cur: _Cursor, key: str, count: int) -> Any:
    _check_count(cur, count, cur.array_strings_left, 8, f"strings in arrays (at {key!r})")
    cur.array_strings_left -= count
    start = cur.pos
    cur.skip_strings(count, key, _LONGEST_ITEM.get(key))
    if not _keep(cur, count):
        return ArrayInfo("string", count)
    end, cur.pos = cur.pos, start  # checked; now read the few kept items
    items = [cur.value_string(f"item {index} of {key!r}") for index in range(count)]
    cur.pos = end
    return items


def _keep(cur: _Cursor, count: int) -> bool:
    """Whether an array's items are kept: short ones, while the whole header's budget lasts."""
    if count > MAX_KEPT_ARRAY_ITEMS or count > cur.keep_left:
        return False
    cur.keep_left -= count
    return True


def _check_tokenizer(cur: _Cursor, metadata: dict[str, Any], types: dict[str, int]) -> None:
    """The arrays llama.cpp indexes by token id have the item type it reads and an item per token."""
    for key, item_type in _TOKENIZER_ARRAYS.items():
        if key not in types:
            continue
        stored = f"an array of {_type_name(cur.arrays[key][0])}" if key in cur.arrays else _type_name(types[key])
        if key not in cur.arrays or cur.arrays[key][0] != item_type:
            raise cur.fail(f"{key} is stored as {stored}, not as an array of {_type_name(item_type)}")
    n_tokens = cur.arrays[_TOKENS][1] if _TOKENS in cur.arrays else None
    for key in _PER_TOKEN_ARRAYS:
        if n_tokens is not None and key in cur.arrays and cur.arrays[key][1] < n_tokens:
            raise cur.fail(f"{key} has {cur.arrays[key][1]} items for {n_tokens} tokens")
    arch = metadata.get("general.architecture")
    vocab_size = metadata.get(f"{arch}.vocab_size") if isinstance(arch, str) else None
    if isinstance(vocab_size, int) and vocab_size > MAX_VOCAB:
        raise cur.fail(f"{arch}.vocab_size claims {vocab_size} tokens; homellm accepts at most {MAX_VOCAB}")


def _read_tensor_info(cur: _Cursor, index: int) -> TensorInfo:
    name = cur.string(f"the name of tensor {index}", limit=MAX_TENSOR_NAME_BYTES)
    if name is None:
        raise cur.fail(f"the name of tensor {index} is longer than {MAX_TENSOR_NAME_BYTES} bytes")
    if "\0" in name:
        raise cur.fail(f"the tensor name {name!r} contains a NUL byte")
    n_dims = cur.u32(f"the dimension count of tensor {name}")
    if not 1 <= n_dims <= MAX_DIMS:
        raise cur.fail(f"tensor {name} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
    cur.need(8 * n_dims + 12, f"the shape, type and offset of tensor {name}")
    *dims, type_id, offset = struct.unpack_from(f"<{n_dims}QIQ", cur.data, cur.pos)
    cur.pos += 8 * n_dims + 12
    shape = tuple(dims)
    nbytes, type_name = _tensor_bytes(cur, name, shape, type_id)
    return TensorInfo(name, shape, type_name, offset, nbytes)


def _place_tensors(cur: _Cursor, tensors: list[TensorInfo], alignment: int, data_size: int) -> None:
    seen: set[str] = set()
    for tensor in tensors:
        name, offset, nbytes = tensor.name, tensor.offset, tensor.nbytes
        if name in seen:
            raise cur.fail(f"the tensor {name} appears twice")
        seen.add(name)
        if offset % alignment:
            raise cur.fail(f"tensor {name} starts at offset {offset}, not a multiple of {alignment}")
        if offset > data_size or nbytes > data_size - offset:
            raise cur.fail(f"tensor {name} ({nbytes} bytes at offset {offset}) lies outside the file, "
                           f"whose data section holds {data_size} bytes")
    ordered = sorted(tensors, key=lambda t: t.offset)
    for before, after in zip(ordered, ordered[1:]):
        if after.offset < before.offset + before.nbytes:
            raise cur.fail(f"tensors {before.name} (bytes {before.offset} to {before.offset + before.nbytes}) "
                           f"and {after.name} (from byte {after.offset}) overlap")


def _tensor_bytes(cur: _Cursor, name: str, shape: tuple[int, ...], type_id: int) -> tuple[int, str]:
    try:
        qtype = gguf.GGMLQuantizationType(type_id)
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    except (ValueError, KeyError):
        raise cur.fail(f"tensor {name} has unknown type {type_id}") from None
    for dim in shape:
        if dim >= 1 << 63:  # llama.cpp reads dimensions as int64
            raise cur.fail(f"tensor {name} has a dimension of {dim}, negative as a signed 64-bit number "
                           f"(shape {list(shape)})")
    if any(dim == 0 for dim in shape):
        raise cur.fail(f"tensor {name} has an empty dimension {list(shape)}")
    if shape[0] % block_size:
        raise cur.fail(f"tensor {name}'s first dimension {shape[0]} is not a multiple of "
                       f"{qtype.name}'s block of {block_size}")
    elements = 1
    for dim in shape:
        elements *= dim
    # Python integers do not overflow; this bound stands in for llama.cpp's int64 checks.
    if elements >= 1 << 62:
        raise cur.fail(f"tensor {name} claims {elements} elements (shape {list(shape)})")
    return elements // block_size * type_size, qtype.name


def model_facts(header: GGUFHeader, *shards: GGUFHeader) -> ModelFacts:
    """The planner's view of a checked header, with the tensors of a split model's other shards."""
    meta = header.metadata
    tensors = header.tensors + tuple(t for shard in shards for t in shard.tensors)
    arch = meta.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise InvalidModelFileError(f"{header.name or 'the GGUF file'} names no general.architecture",
                                    hint="the file is not a llama.cpp model")

    def arch_int(key: str) -> int | None:
        return _as_int(meta.get(f"{arch}.{key}"))

    head_count = arch_int("attention.head_count")
    embedding = arch_int("embedding_length")
    head_dim = embedding // head_count if embedding and head_count else None
    quant_mix: dict[str, int] = {}
    for tensor in tensors:
        quant_mix[tensor.ggml_type] = quant_mix.get(tensor.ggml_type, 0) + tensor.nbytes
    experts = tuple(t.name for t in tensors if _EXPERT_TENSOR.search(t.name))
    expert_names = set(experts)
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = tokens.count if isinstance(tokens, ArrayInfo) else len(tokens) if isinstance(tokens, list) else None
    return ModelFacts(
        architecture=arch,
        general_name=meta.get("general.name") if isinstance(meta.get("general.name"), str) else None,
        parameters=sum(t.elements for t in tensors),
        block_count=arch_int("block_count"),
        context_length=arch_int("context_length"),
        embedding_length=embedding,
        feed_forward_length=arch_int("feed_forward_length"),
        head_count=head_count,
        head_count_kv=arch_int("attention.head_count_kv") or head_count,
        key_length=arch_int("attention.key_length") or head_dim,
        value_length=arch_int("attention.value_length") or head_dim,
        vocab_size=arch_int("vocab_size") or vocab,
        file_type=_file_type_name(meta.get("general.file_type")),
        quant_mix=quant_mix,
        tensor_bytes=sum(quant_mix.values()),
        file_size=header.file_size + sum(shard.file_size for shard in shards),
        expert_count=arch_int("expert_count"),
        expert_used_count=arch_int("expert_used_count"),
        expert_feed_forward_length=arch_int("expert_feed_forward_length"),
        expert_tensors=experts,
        expert_bytes=sum(t.nbytes for t in tensors if t.name in expert_names),
        sliding_window=arch_int("attention.sliding_window"),
        kv_lora_rank=arch_int("attention.kv_lora_rank"),
        rope_dimension_count=arch_int("rope.dimension_count"),
        rope_freq_base=_as_float(meta.get(f"{arch}.rope.freq_base")),
        rope_scaling_type=_as_str(meta.get(f"{arch}.rope.scaling.type")),
        rope_scaling_factor=_as_float(meta.get(f"{arch}.rope.scaling.factor")),
        rope_original_context_length=arch_int("rope.scaling.original_context_length"),
        chat_template=isinstance(meta.get("tokenizer.chat_template"), str),
        split_count=_as_int(meta.get("split.count")) or 1,
        metadata=_short_scalars(meta),
    )


def read_model_facts(path: Path) -> ModelFacts:
    """Check a GGUF file's header and return its facts."""
    return model_facts(read_header(path))


def _short_scalars(meta: dict[str, Any]) -> dict[str, Any]:
    """Metadata worth passing on: numbers, flags and short strings, a bounded number of them."""
    kept: dict[str, Any] = {}
    for key, value in meta.items():
        if len(kept) >= MAX_FACT_KEYS:
            break
        if isinstance(value, str) and len(value) <= MAX_FACT_STRING:
            kept[key] = value
        elif isinstance(value, float) and math.isfinite(value) or isinstance(value, int):
            kept[key] = value
    return kept


def _as_int(value: Any) -> int | None:
    """A count; per-layer arrays count by their largest layer. Negative counts mean nothing."""
    if isinstance(value, list):
        numbers = [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
        value = max(numbers) if numbers else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _as_float(value: Any) -> float | None:
    """A finite number, so that facts stay valid JSON."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _file_type_name(value: Any) -> str | None:
    """`general.file_type` as llama.cpp prints it: Q4_K_M, F16, ..."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        name = gguf.LlamaFileType(value).name
    except ValueError:
        return f"unknown ({value})"
    return name.removeprefix("MOSTLY_").replace("ALL_F32", "F32")
