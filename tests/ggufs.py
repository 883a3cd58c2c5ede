"""GGUF files made by tests: copies of the built-in model with changed metadata."""

from __future__ import annotations

from pathlib import Path

import gguf

# Fields the writer produces itself.
_WRITER_FIELDS = ("GGUF.", "general.architecture")


def copy_with_metadata(src: Path, dst: Path, overrides: dict[str, str]) -> Path:
    """Write `dst`: the tensors and metadata of `src`, with string fields replaced or added."""
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
        writer.add_string(name, value)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst
