"""The GGUF reader: facts from real files, and hostile headers refused fast with a reason."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from homellm.errors import InvalidModelFileError
from homellm.models import gguf as gguf_reader
from homellm.models.gguf import ArrayInfo, read_header, read_model_facts

U16, I16, U32, F32, BOOL, STRING, ARRAY, U64 = 2, 3, 4, 6, 7, 8, 9, 10
F32_TYPE = 0


def gguf_string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def kv(key: str, value_type: int, payload: bytes) -> bytes:
    return gguf_string(key.encode()) + struct.pack("<I", value_type) + payload


def tensor(name: str, dims: tuple[int, ...], ggml_type: int = F32_TYPE, offset: int = 0) -> bytes:
    return (gguf_string(name.encode()) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
            + struct.pack("<IQ", ggml_type, offset))


def gguf_file(path: Path, kvs: list[bytes] = (), tensors: list[bytes] = (), data: bytes = b"",
              n_kv: int | None = None, n_tensors: int | None = None, version: int = 3) -> Path:
    """Hand-made GGUF bytes: counts may lie, which is the point."""
    kvs = [kv("general.architecture", STRING, gguf_string(b"llama")), *kvs]
    body = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                                 len(kvs) if n_kv is None else n_kv)
    body += b"".join(kvs) + b"".join(tensors)
    body += b"\0" * (-len(body) % 32) + data
    path.write_bytes(body)
    return path


def refusal(path: Path) -> str:
    start = time.monotonic()
    with pytest.raises(InvalidModelFileError) as info:
        read_header(path)
    assert time.monotonic() - start < 2, "a hostile header must be refused in bounded time"
    assert path.name in info.value.message and info.value.hint
    return info.value.message


def test_builtin_model_facts(builtin_path: Path):
    facts = read_model_facts(builtin_path)
    assert facts.architecture == "llama" and facts.block_count == 30
    assert 134_000_000 < facts.parameters < 135_000_000
    assert (facts.embedding_length, facts.head_count, facts.head_count_kv) == (576, 9, 3)
    assert facts.key_length == facts.value_length == 64 and facts.feed_forward_length == 1536
    assert facts.vocab_size == 49152 and facts.context_length == 8192
    assert facts.file_type == "Q4_1" and facts.chat_template
    assert set(facts.quant_mix) == {"Q4_1", "Q8_0", "F32"}
    assert facts.tensor_bytes == sum(facts.quant_mix.values()) < facts.file_size
    assert not facts.is_moe and facts.expert_tensors == ()


def test_moe_facts_name_the_expert_tensors(tiny_moe_path: Path):
    facts = read_model_facts(tiny_moe_path)
    assert facts.architecture == "qwen3moe" and facts.is_moe
    assert (facts.expert_count, facts.expert_used_count) == (4, 2)
    assert len(facts.expert_tensors) == 6  # gate, up and down in each of 2 layers
    assert all("_exps." in name for name in facts.expert_tensors)
    assert 0 < facts.expert_bytes < facts.tensor_bytes


def test_dense_fixture_facts(tiny_dense_path: Path):
    facts = read_model_facts(tiny_dense_path)
    assert (facts.architecture, facts.block_count, facts.embedding_length) == ("llama", 2, 64)
    assert facts.file_type == "Q8_0" and facts.expert_count is None


def test_a_small_valid_file_is_read(tmp_path: Path):
    path = gguf_file(tmp_path / "ok.gguf", tensors=[tensor("t", (8,))], data=b"\0" * 32)
    header = read_header(path)
    assert [t.name for t in header.tensors] == ["t"] and header.tensors[0].nbytes == 32


def test_non_gguf_is_refused(tmp_path: Path):
    path = tmp_path / "notes.gguf"
    path.write_text("just some text, long enough to have a header's worth of bytes\n")
    assert "not b'GGUF'" in refusal(path)


def test_tiny_file_is_refused(tmp_path: Path):
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF\3\0\0\0")
    assert "8 bytes long" in refusal(path)


def test_truncated_model_is_refused(tmp_path: Path, builtin_path: Path):
    path = tmp_path / "cut.gguf"
    with builtin_path.open("rb") as src:
        path.write_bytes(src.read(20_000_000))
    assert "lies outside the file" in refusal(path)


def test_truncated_header_is_refused(tmp_path: Path, builtin_path: Path):
    path = tmp_path / "cut-header.gguf"
    with builtin_path.open("rb") as src:
        path.write_bytes(src.read(500_000))  # inside the token list
    assert "runs past the end" in refusal(path)


def test_header_claiming_2_60_tensors_is_refused(tmp_path: Path):
    path = gguf_file(tmp_path / "many.gguf", n_tensors=1 << 60)
    assert str(1 << 60) in refusal(path)


def test_header_claiming_2_60_keys_is_refused(tmp_path: Path):
    assert "keys" in refusal(gguf_file(tmp_path / "keys.gguf", n_kv=1 << 60))


def test_string_of_2_40_bytes_is_refused(tmp_path: Path):
    path = gguf_file(tmp_path / "long.gguf", kvs=[kv("general.name", STRING, struct.pack("<Q", 1 << 40) + b"x")])
    assert "runs past the end" in refusal(path)


def test_array_of_2_60_items_is_refused(tmp_path: Path):
    payload = struct.pack("<IQ", U32, 1 << 60)
    assert "runs past the end" in refusal(gguf_file(tmp_path / "arr.gguf", kvs=[kv("x.arr", ARRAY, payload)]))


def test_string_array_of_2_60_items_is_refused(tmp_path: Path):
    payload = struct.pack("<IQ", STRING, 1 << 60)
    assert "claims 1152921504606846976 strings" in refusal(gguf_file(tmp_path / "sarr.gguf", kvs=[kv("x.arr", ARRAY, payload)]))


def test_nested_array_is_refused(tmp_path: Path):
    payload = struct.pack("<IQ", ARRAY, 1) + struct.pack("<IQ", U32, 0)
    assert "array of arrays" in refusal(gguf_file(tmp_path / "nest.gguf", kvs=[kv("x.arr", ARRAY, payload)]))


def test_unknown_value_type_is_refused(tmp_path: Path):
    assert "unknown value type" in refusal(gguf_file(tmp_path / "vt.gguf", kvs=[kv("x.y", 99, b"\0" * 8)]))


def test_duplicate_key_is_refused(tmp_path: Path):
    twice = [kv("x.n", U32, struct.pack("<I", 1)), kv("x.n", U32, struct.pack("<I", 2))]
    assert "appears twice" in refusal(gguf_file(tmp_path / "dup.gguf", kvs=twice))


@pytest.mark.parametrize("version", [1, 4, 0xFFFFFFFF])
def test_unsupported_version_is_refused(tmp_path: Path, version: int):
    assert f"version {version}" in refusal(gguf_file(tmp_path / "v.gguf", version=version))


def test_tensor_data_outside_the_file_is_refused(tmp_path: Path):
    path = gguf_file(tmp_path / "out.gguf", tensors=[tensor("t", (8,), offset=1 << 40)], data=b"\0" * 32)
    assert "lies outside the file" in refusal(path)


def test_misaligned_tensor_is_refused(tmp_path: Path):
    path = gguf_file(tmp_path / "align.gguf", tensors=[tensor("t", (4,), offset=4)], data=b"\0" * 64)
    assert "not a multiple of 32" in refusal(path)


def test_overlapping_tensors_are_refused(tmp_path: Path):
    tensors = [tensor("a", (16,), offset=0), tensor("b", (16,), offset=32)]
    assert "overlap" in refusal(gguf_file(tmp_path / "lap.gguf", tensors=tensors, data=b"\0" * 128))


def test_duplicate_tensor_is_refused(tmp_path: Path):
    tensors = [tensor("a", (8,), offset=0), tensor("a", (8,), offset=32)]
    assert "appears twice" in refusal(gguf_file(tmp_path / "dupt.gguf", tensors=tensors, data=b"\0" * 64))


def test_five_dimensions_are_refused(tmp_path: Path):
    path = gguf_file(tmp_path / "dims.gguf", tensors=[tensor("t", (1, 1, 1, 1, 1))], data=b"\0" * 32)
    assert "5 dimensions" in refusal(path)


def test_overflowing_element_count_is_refused(tmp_path: Path):
    path = gguf_file(tmp_path / "huge.gguf", tensors=[tensor("t", (1 << 32, 1 << 32))], data=b"\0" * 32)
    assert "elements" in refusal(path)


def test_unknown_tensor_type_is_refused(tmp_path: Path):
    path = gguf_file(tmp_path / "type.gguf", tensors=[tensor("t", (8,), ggml_type=250)], data=b"\0" * 32)
    assert "unknown type 250" in refusal(path)


def test_long_tensor_name_is_refused(tmp_path: Path):
    path = gguf_file(tmp_path / "name.gguf", tensors=[tensor("t" * 200, (8,))], data=b"\0" * 32)
    assert "longer than 63 bytes" in refusal(path)


def test_bad_alignment_is_refused(tmp_path: Path):
    path = gguf_file(tmp_path / "al.gguf", kvs=[kv("general.alignment", U32, struct.pack("<I", 3))])
    assert "power of two" in refusal(path)


def test_missing_file_is_refused(tmp_path: Path):
    with pytest.raises(InvalidModelFileError, match="cannot read"):
        read_header(tmp_path / "absent.gguf")


@pytest.mark.parametrize("key, value_type, payload, stored_as", [
    ("general.alignment", BOOL, b"\x01", "bool"),
    ("general.alignment", U64, struct.pack("<Q", 32), "uint64"),
    ("split.no", I16, struct.pack("<h", 1), "int16"),
    ("split.count", U32, struct.pack("<I", 2), "uint32"),
])
def test_keys_llama_cpp_reads_by_type_must_have_that_type(tmp_path: Path, key: str, value_type: int,
                                                          payload: bytes, stored_as: str):
    # llama.cpp aborts the whole process (GGML_ASSERT) on these; they must never reach it.
    path = gguf_file(tmp_path / "typed.gguf", kvs=[kv(key, value_type, payload)])
    assert f"{key} is stored as {stored_as}" in refusal(path)


def test_nul_in_a_tensor_name_is_refused(tmp_path: Path):
    tensors = [tensor("a\0x", (8,), offset=0), tensor("a\0y", (8,), offset=32)]
    assert "NUL" in refusal(gguf_file(tmp_path / "nul.gguf", tensors=tensors, data=b"\0" * 64))


def test_nul_in_a_key_is_refused(tmp_path: Path):
    assert "NUL" in refusal(gguf_file(tmp_path / "nulkey.gguf", kvs=[kv("a\0b", U32, b"\0" * 4)]))


def test_more_keys_than_allowed_are_refused(tmp_path: Path):
    keys = [kv(f"k.{i}", U32, b"\0" * 4) for i in range(gguf_reader.MAX_KEYS + 1)]
    assert "at most 4096" in refusal(gguf_file(tmp_path / "keys.gguf", kvs=keys))


def test_strings_across_arrays_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(gguf_reader, "MAX_ARRAY_STRINGS", 100)
    strings = struct.pack("<IQ", STRING, 60) + gguf_string(b"s") * 60
    path = gguf_file(tmp_path / "strs.gguf", kvs=[kv("a.x", ARRAY, strings), kv("b.x", ARRAY, strings)])
    assert "strings in arrays" in refusal(path)


def test_kept_array_items_are_bounded_across_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(gguf_reader, "MAX_KEPT_ITEMS", 10)
    numbers = struct.pack("<IQ", U32, 8) + b"\0" * 32
    header = read_header(gguf_file(tmp_path / "arrs.gguf", kvs=[kv("a.x", ARRAY, numbers), kv("b.x", ARRAY, numbers)]))
    assert header.metadata["a.x"] == [0] * 8
    assert header.metadata["b.x"] == ArrayInfo("uint32", 8), "past the budget only the length is kept"


def test_nonsense_numbers_do_not_become_facts(tmp_path: Path):
    kvs = [kv("llama.attention.head_count", 5, struct.pack("<i", -3)),
           kv("llama.embedding_length", U32, struct.pack("<I", 64)),
           kv("llama.rope.freq_base", F32, struct.pack("<f", float("nan"))),
           kv("general.note", STRING, gguf_string(b"x" * 5000))]
    facts = read_model_facts(gguf_file(tmp_path / "odd.gguf", kvs=kvs))
    assert facts.head_count is None and facts.key_length is None
    assert facts.rope_freq_base is None and "llama.rope.freq_base" not in facts.metadata
    assert "general.note" not in facts.metadata, "long strings are not carried into the store"
    assert facts.embedding_length == 64
