from pathlib import Path

import pytest

from homellm.errors import (
    InvalidModelFileError,
    InvalidModelNameError,
    ModelNotFoundError,
)
from homellm.models.builtin import BUILTIN_NAME, builtin_model_path
from homellm.models.resolve import resolve_model, stored_model_ref
from homellm.models.store import Store


def test_no_name_means_the_builtin_model():
    ref = resolve_model(None)
    assert ref.name == BUILTIN_NAME
    assert ref.path == builtin_model_path()
    assert ref.path.stat().st_size > 90_000_000
    assert ref.path.read_bytes()[:4] == b"GGUF"


def test_short_names_reach_the_builtin_model():
    assert resolve_model("smollm2").path == resolve_model(BUILTIN_NAME).path


def test_gguf_path_is_named_by_its_stem(tiny_dense_path: Path):
    ref = resolve_model(str(tiny_dense_path))
    assert ref.name == "tiny-dense" and ref.path == tiny_dense_path.resolve()


def test_gguf_path_with_a_bad_header_is_refused_before_loading(tmp_path: Path):
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF" + b"\xff" * 40)
    with pytest.raises(InvalidModelFileError, match="fake.gguf"):
        resolve_model(str(model))


def test_stored_names_resolve_through_the_store(tmp_path: Path, tiny_moe_path: Path):
    store = Store(tmp_path / "home")
    store.add([tiny_moe_path], "moe:tiny", "test")
    assert resolve_model("moe:tiny", store).path == store.get("moe:tiny").path
    assert stored_model_ref(store, "MOE:tiny").name == "moe:tiny"


def test_clients_cannot_name_paths(tmp_path: Path, tiny_dense_path: Path):
    store = Store(tmp_path / "home")
    with pytest.raises(InvalidModelNameError):
        stored_model_ref(store, str(tiny_dense_path))


def test_unknown_name_is_refused_with_a_hint():
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("mistral:7b")
    assert "mistral:7b" in info.value.message and BUILTIN_NAME in info.value.hint


def test_missing_gguf_file_is_refused(tmp_path: Path):
    with pytest.raises(ModelNotFoundError, match="no GGUF file"):
        resolve_model(str(tmp_path / "gone.gguf"))
