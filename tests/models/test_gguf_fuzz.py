"""Fuzzing the GGUF reader: real headers, mutated, are read or refused, within the bounds gguf.py states.

The seeds are the tiny fixtures of tests/ggufs.py and the built-in model, their whole headers made small
(the vocabulary and merges cut to 1,100 items, so that a read takes milliseconds and arrays still run
past what the reader keeps; each tensor one quant block, so that the file is its header and a few KB of
data), and the built-in model's first MiB as it is. Mutations aim at what a parser trusts: counts,
lengths, value and item types, dimensions, tensor types and offsets (set to 0, 2**63, 2**64 - 1, the
file's size, ...), single bytes, duplicated, replaced and dropped keys, truncation. Every read is measured
with tracemalloc.

The default run tries a bounded number of examples with a fixed seed. For a longer run:
    HOMELLM_FUZZ_EXAMPLES=20000 pytest -s tests/models/test_gguf_fuzz.py --hypothesis-show-statistics
which tries that many mutants of the seeds and a tenth as many of the first MiB (slower to read), and
also checks the reader's worst cases for memory and time (too slow for every run).
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gguf
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from homellm.errors import InvalidModelFileError
from homellm.models import gguf as reader
from homellm.models.gguf import read_header, read_model_facts

LONG_RUN = int(os.environ.get("HOMELLM_FUZZ_EXAMPLES", "0"))
# A read is pure computation over at most a few MB here: seconds would mean a loop the bounds missed.
SECONDS_PER_READ = 10
STRING, ARRAY = 8, 9
SCALAR_WIDTHS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
ALIGNMENT = 32  # every seed uses the default
INTERESTING = (0, 1, 2, 3, 4, 7, 8, 12, 13, 14, 31, 32, 33, 63, 64, 255, 256, 1023, 1024, 1025, 4096, 4097,
               65535, 65536, 1 << 21, (1 << 21) + 1, 1 << 22, 10**9, (1 << 31) - 1, 1 << 31, (1 << 32) - 1,
               1 << 32, 1 << 62, (1 << 63) - 1, 1 << 63, (1 << 64) - 1)
# Keys the reader or llama.cpp treats specially: a mutation may replace their value with another type.
SPECIAL_KEYS = ("general.alignment", "general.architecture", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "llama.vocab_size", "split.count",
                "split.no", "tokenizer.chat_template", "llama.attention.head_count", "general.file_type")
Draw = Callable[..., object]


def examples(default: int, share: float = 1.0) -> int:
    """The default run's budget, or a share of a long run's (a slow test gets fewer)."""
    return max(default, int(LONG_RUN * share))


# ----- the layout of a trusted header: where each count, length and type lies -----


@dataclass
class Layout:
    """Byte positions of a header's fields by kind ("n_kv", "array_count", "dim", ...), and its records."""

    fields: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # kind: [(position, width)]
    kvs: list[tuple[str, int, int]] = field(default_factory=list)  # key, start, end
    tensors: list[tuple[int, int]] = field(default_factory=list)
    end: int = 0
    complete: bool = False


class _Truncated(Exception):
    pass


def walk(data: bytes) -> Layout:
    """The layout of a well-formed header, or of as much of it as `data` holds."""
    layout = Layout()
    pos = 8

    def take(width: int, kind: str) -> int:
        nonlocal pos
        if pos + width > len(data):
            raise _Truncated
        layout.fields.setdefault(kind, []).append((pos, width))
        pos += width
        return int.from_bytes(data[pos - width:pos], "little")

    def skip(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise _Truncated
        pos += n
        return data[pos - n:pos]

    try:
        n_tensors, n_kv = take(8, "n_tensors"), take(8, "n_kv")
        for _ in range(n_kv):
            start = pos
            key = skip(take(8, "key_length")).decode()
            value_type = take(4, "value_type")
            if value_type == STRING:
                skip(take(8, "string_length"))
            elif value_type == ARRAY:
                item_type, count = take(4, "item_type"), take(8, "array_count")
                for _ in range(count if item_type == STRING else 0):
                    skip(take(8, "item_length"))
                skip(0 if item_type == STRING else SCALAR_WIDTHS[item_type] * count)
            else:
                take(SCALAR_WIDTHS[value_type], "scalar")
            layout.kvs.append((key, start, pos))
        for _ in range(n_tensors):
            start = pos
            skip(take(8, "name_length"))
            for _ in range(take(4, "n_dims")):
                take(8, "dim")
            take(4, "ggml_type")
            take(8, "tensor_offset")
            layout.tensors.append((start, pos))
        layout.complete = True
    except _Truncated:
        pass
    layout.end = pos
    return layout


def compact(data: bytes, keep: int) -> tuple[bytes, int]:
    """A well-formed header made small: every array cut to its first `keep` items, every tensor one block.

    Tensors keep their names, types and dimension counts; their shapes shrink to one quant block (so the
    data section is kilobytes, and a string the fuzzer stretches cannot reach megabytes of tensor data)
    and their offsets follow. Returns the header, padded to the data section, and the data's size.
    """
    layout = walk(data)
    assert layout.complete
    out = bytearray(data[:24])
    for _, start, end in layout.kvs:
        record = data[start:end]
        at = 8 + int.from_bytes(record[:8], "little")  # the value type, after the key
        (value_type,) = struct.unpack_from("<I", record, at)
        item_type, count = struct.unpack_from("<IQ", record, at + 4) if value_type == ARRAY else (0, 0)
        if count <= keep:
            out += record
            continue
        items = at + 16
        if item_type == STRING:
            end_of_items = items
            for _ in range(keep):
                end_of_items += 8 + int.from_bytes(record[end_of_items:end_of_items + 8], "little")
        else:
            end_of_items = items + keep * SCALAR_WIDTHS[item_type]
        out += record[:at + 8] + struct.pack("<Q", keep) + record[items:end_of_items]
    data_size = 0
    for start, _ in layout.tensors:
        name_end = start + 8 + int.from_bytes(data[start:start + 8], "little")
        (n_dims,) = struct.unpack_from("<I", data, name_end)
        (ggml_type,) = struct.unpack_from("<I", data, name_end + 4 + 8 * n_dims)
        block, block_bytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ggml_type)]
        shape = (block, *[1] * (n_dims - 1))
        out += data[start:name_end + 4] + struct.pack(f"<{n_dims}QIQ", *shape, ggml_type, data_size)
        data_size += -(-block_bytes // ALIGNMENT) * ALIGNMENT
    return bytes(out + b"\0" * (-len(out) % ALIGNMENT)), data_size


@dataclass(frozen=True)
class Seed:
    """A real header to mutate; `data_size` bytes of (sparse) tensor data follow it."""

    name: str
    header: bytes
    data_size: int
    layout: Layout

    @classmethod
    def of_file(cls, name: str, path: Path, keep: int = 1100) -> Seed:
        with path.open("rb") as file:
            header, data_size = compact(file.read(4 << 20), keep)
        return cls(name, header, data_size, walk(header))

    def __repr__(self) -> str:  # hypothesis prints the seed of a failing example
        return f"Seed({self.name})"


# ----- mutations -----


def integer(draw: Draw, width: int, file_bytes: int) -> int:
    """A value for a `width`-byte field: a boundary, one near the file's size, or any."""
    value = draw(st.one_of(st.sampled_from(INTERESTING),
                           st.sampled_from((file_bytes, file_bytes - 8, file_bytes + 1)),
                           st.integers(0, (1 << (8 * width)) - 1)))
    return value % (1 << (8 * width))


def overwrite_field(draw: Draw, data: bytearray, layout: Layout, file_bytes: int) -> None:
    kind = draw(st.sampled_from(sorted(layout.fields)), label="field")
    pos, width = draw(st.sampled_from(layout.fields[kind]))
    data[pos:pos + width] = integer(draw, width, file_bytes).to_bytes(width, "little")


def near_a_field(draw: Draw, layout: Layout, size: int) -> int:
    """A byte position at or just after a field: spread over the structure, not crowded at the start."""
    kind = draw(st.sampled_from(sorted(layout.fields)))
    pos, _ = draw(st.sampled_from(layout.fields[kind]))
    return min(pos + draw(st.integers(0, 15)), size - 1)


def cut_position(draw: Draw, layout: Layout, size: int) -> int:
    """Where to cut a file: at a field, or anywhere (in 4,096ths of it, spread over the whole file)."""
    if draw(st.booleans()):
        return near_a_field(draw, layout, size)
    return size * draw(st.integers(0, 4095)) // 4096


def flip_byte(draw: Draw, data: bytearray, layout: Layout, file_bytes: int) -> None:
    data[near_a_field(draw, layout, len(data))] ^= draw(st.integers(1, 255))


def hostile_value(draw: Draw, file_bytes: int) -> bytes:
    """A value type and payload: scalars, strings and arrays whose lengths may lie, unknown types."""
    value_type = draw(st.one_of(st.integers(0, 12), st.sampled_from((13, 14, 255, (1 << 32) - 1))))
    if value_type in SCALAR_WIDTHS:
        width = SCALAR_WIDTHS[value_type]
        return struct.pack("<I", value_type) + integer(draw, width, file_bytes).to_bytes(width, "little")
    tail = draw(st.binary(max_size=64))
    if value_type == STRING:
        return struct.pack("<IQ", STRING, draw(st.one_of(st.integers(0, 64), st.sampled_from(INTERESTING)))) + tail
    if value_type == ARRAY:
        item_type = draw(st.one_of(st.integers(0, 12), st.sampled_from((13, 255))))
        return struct.pack("<IIQ", ARRAY, item_type, integer(draw, 8, file_bytes)) + tail
    return struct.pack("<I", value_type) + tail


def replace_key(draw: Draw, data: bytearray, layout: Layout, file_bytes: int) -> None:
    """Give a special key (or a new one) a hostile value; the record goes where the key was, or last."""
    key = draw(st.sampled_from(SPECIAL_KEYS))
    record = struct.pack("<Q", len(key)) + key.encode() + hostile_value(draw, file_bytes)
    spans = [(start, end) for name, start, end in layout.kvs if name == key]
    start, end = spans[0] if spans else (layout.kvs[-1][2],) * 2
    data[start:end] = record
    if not spans:
        _add_to_count(data, 16, 1)


def duplicate_key(draw: Draw, data: bytearray, layout: Layout, file_bytes: int) -> None:
    _, start, end = draw(st.sampled_from(layout.kvs))
    at = draw(st.sampled_from([end, layout.kvs[-1][2]]))
    data[at:at] = data[start:end]
    _add_to_count(data, 16, 1)


def drop_key(draw: Draw, data: bytearray, layout: Layout, file_bytes: int) -> None:
    _, start, end = draw(st.sampled_from(layout.kvs))
    del data[start:end]
    _add_to_count(data, 16, -1)


def _add_to_count(data: bytearray, pos: int, change: int) -> None:
    count = (int.from_bytes(data[pos:pos + 8], "little") + change) % (1 << 64)
    data[pos:pos + 8] = count.to_bytes(8, "little")


POINT_EDITS = (overwrite_field, overwrite_field, overwrite_field, flip_byte)  # fields thrice as often
# Most examples keep their records, and a duplicate is refused at once, so it comes least often.
RECORD_EDITS = (None, None, None, replace_key, replace_key, replace_key, drop_key, duplicate_key)


def mutate(draw: Draw, seed: Seed, truncate_always: bool = False) -> tuple[bytes, int]:
    """Up to three field or byte edits, perhaps a key replaced, duplicated or dropped, perhaps a cut.

    Returns the header and the size of the data that follows it: none once the file is cut.
    """
    data = bytearray(seed.header)
    file_bytes = len(seed.header) + seed.data_size
    for edit in draw(st.lists(st.sampled_from(POINT_EDITS), min_size=0, max_size=3), label="point edits"):
        edit(draw, data, seed.layout, file_bytes)
    # Records are edited after bytes, at positions taken from the seed, so that one edit cannot move another.
    record_edit = draw(st.sampled_from(RECORD_EDITS), label="record edit")
    if record_edit is not None and seed.layout.kvs:
        record_edit(draw, data, seed.layout, file_bytes)
    if data == bytearray(seed.header) or truncate_always or draw(st.sampled_from(range(5))) == 0:
        del data[cut_position(draw, seed.layout, len(data)):]  # positions from the seed: near enough
        return bytes(data), 0
    return bytes(data), seed.data_size


# ----- reading under measurement -----


def memory_bound(bytes_read: int) -> int:
    """The Python memory gguf.py promises for reading this many bytes of a file."""
    return min(reader.MAX_READ_MEMORY_BYTES, reader.READ_MEMORY_BASE_BYTES + reader.READ_MEMORY_PER_BYTE * bytes_read)


def read_measured(path: Path) -> tuple[str | None, int, float]:
    """Read a file's facts: the refusal's message (None when read), peak Python memory, seconds.

    Anything but `InvalidModelFileError` propagates and fails the test with its traceback.
    """
    tracemalloc.start()
    start = time.monotonic()
    try:
        facts = read_model_facts(path)
        json.dumps(asdict(facts), allow_nan=False)  # what the store saves must be valid JSON
        message = None
    except InvalidModelFileError as exc:
        assert path.name in exc.message and exc.hint, f"a refusal names the file and a remedy: {exc.message}"
        message = exc.message
    finally:
        seconds = time.monotonic() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return message, peak, seconds


def check_read(path: Path, header: bytes, data_size: int) -> tuple[str | None, int]:
    """Write `header` and a sparse data tail, read it, and hold the read to the stated bounds.

    Returns the refusal's message (None when read) and the read's peak Python memory.
    """
    with path.open("wb") as file:
        file.write(header)
        file.truncate(len(header) + data_size)
    message, peak, seconds = read_measured(path)
    file_bytes = len(header) + data_size  # all the reader can read
    assert peak <= memory_bound(file_bytes), f"{peak} bytes of memory to read a {file_bytes}-byte file"
    assert seconds < SECONDS_PER_READ
    return message, peak


def count_outcome(message: str | None, peak: int) -> None:
    """Tell hypothesis's statistics which check refused the example and how much memory the read took."""
    event("read" if message is None else "refused: " + _kind_of_refusal(message))
    event(f"peak memory up to {max(1 << 10, 1 << (peak - 1).bit_length()) >> 10} KiB")


def _kind_of_refusal(message: str) -> str:
    """A refusal without its numbers and names, to count which checks the fuzzer reaches."""
    reason = message.split(": ", 1)[-1]
    return re.sub(r"'[^']*'|\b(item|key|tensor|tensors) \S+|\d+", "#", reason)[:70]


# ----- seeds -----


@pytest.fixture(scope="module")
def seeds(tiny_dense_path: Path, tiny_moe_path: Path, builtin_path: Path) -> list[Seed]:
    return [Seed.of_file("tiny-dense", tiny_dense_path), Seed.of_file("tiny-moe", tiny_moe_path),
            Seed.of_file("builtin", builtin_path)]


@pytest.fixture(scope="module")
def builtin_prefix(builtin_path: Path) -> Seed:
    """The built-in model's first MiB as it is: the whole header is 1.8 MB, so this ends in the merges."""
    with builtin_path.open("rb") as file:
        head = file.read(1 << 20)
    return Seed("builtin-first-MiB", head, 0, walk(head))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "mutant.gguf"


def test_seeds_are_read_and_cover_every_field_kind(seeds: list[Seed], builtin_prefix: Seed, scratch: Path):
    for seed in seeds:
        assert check_read(scratch, seed.header, seed.data_size)[0] is None, f"{seed.name} must read as it is"
        assert read_header(scratch).tensors
        assert {"array_count", "item_length", "dim", "tensor_offset", "value_type"} <= set(seed.layout.fields)
    assert not builtin_prefix.layout.complete and len(builtin_prefix.layout.fields["item_length"]) > 50_000


@settings(max_examples=examples(150), derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_mutated_headers_are_read_or_refused_within_bounds(data: st.DataObject, seeds: list[Seed], scratch: Path):
    seed = data.draw(st.sampled_from(seeds), label="seed")
    count_outcome(*check_read(scratch, *mutate(data.draw, seed)))


@settings(max_examples=examples(25, share=0.1), derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_mutated_first_mib_of_the_builtin_model_is_read_or_refused_within_bounds(
        data: st.DataObject, builtin_prefix: Seed, scratch: Path):
    count_outcome(*check_read(scratch, *mutate(data.draw, builtin_prefix, truncate_always=True)))


# ----- the worst cases of the stated bounds (long runs only: each takes seconds under tracemalloc) -----


def _string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def _kv(key: bytes, value_type: int, payload: bytes) -> bytes:
    return _string(key) + struct.pack("<I", value_type) + payload


def test_largest_header_the_limits_allow_stays_within_the_memory_bound(tmp_path: Path):
    """Every budget full at once: the most keys, each at the longest key, kept items and text, and tensors."""
    item = _string(b"y" * 120)  # 65,536 kept strings of 120 bytes fill the 8 MiB text budget
    per_key = reader.MAX_KEPT_ITEMS // reader.MAX_KEYS
    kvs = [_kv(b"general.architecture", STRING, _string(b"llama"))]
    array = struct.pack("<IQ", STRING, per_key) + item * per_key
    kvs += [_kv(b"k" * (reader.MAX_KEY_BYTES - 8) + b"%07d" % i, ARRAY, array) for i in range(reader.MAX_KEYS - 1)]
    tensors = [_string(b"blk.%05d.a_name_that_fills_the_sixty_three_bytes_ggml_allows" % i)
               + struct.pack("<I4QIQ", 4, 1000, 1000, 1000, 1000, 0, 4_000_000_000 * 32 * i)
               for i in range(reader.MAX_TENSORS)]
    header = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + b"".join(tensors)
    path = tmp_path / "largest.gguf"
    path.write_bytes(header)
    message, peak, seconds = read_measured(path)
    print(f"largest header: {len(header)} bytes, peak {peak / 2**20:.1f} MiB, {seconds:.1f} s under tracemalloc")
    assert message is not None and "past the end of the file" in message  # the data would be 2**41 bytes
    assert peak <= reader.MAX_READ_MEMORY_BYTES  # its time under tracemalloc says little: printed only


def test_most_strings_the_limits_allow_are_read_in_seconds(tmp_path: Path):
    """The longest loop: MAX_ARRAY_STRINGS empty strings, one step each."""
    count = reader.MAX_ARRAY_STRINGS
    kvs = [_kv(b"general.architecture", STRING, _string(b"llama")),
           _kv(b"x.strings", ARRAY, struct.pack("<IQ", STRING, count) + bytes(8 * count))]
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs)
    path = tmp_path / "strings.gguf"
    path.write_bytes(header + b"\0" * (-len(header) % ALIGNMENT))
    start = time.monotonic()
    facts = read_model_facts(path)
    seconds = time.monotonic() - start
    print(f"{count} strings: {len(header)} bytes in {seconds:.2f} s")
    assert facts.architecture == "llama" and seconds < SECONDS_PER_READ
