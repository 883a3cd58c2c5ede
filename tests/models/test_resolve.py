from pathlib import Path

import pytest

from homellm.errors import ModelNotFoundError
from homellm.models.builtin import BUILTIN_NAME, builtin_model_path
from homellm.models.resolve import resolve_model


def test_no_name_means_the_builtin_model():
    ref = resolve_model(None)
    assert ref.name == BUILTIN_NAME
    assert ref.path == builtin_model_path()
    assert ref.path.stat().st_size > 90_000_000
    assert ref.path.read_bytes()[:4] == b"GGUF"


def test_short_names_reach_the_builtin_model():
    assert resolve_model("smollm2").path == resolve_model(BUILTIN_NAME).path


def test_gguf_path_is_named_by_its_stem(tmp_path: Path):
    model = tmp_path / "tiny-model.gguf"
    model.write_bytes(b"GGUF")
    ref = resolve_model(str(model))
    assert ref.name == "tiny-model" and ref.path == model.resolve()


def test_unknown_name_is_refused_with_a_hint():
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("mistral:7b")
    assert "mistral:7b" in info.value.message and BUILTIN_NAME in info.value.hint


def test_missing_gguf_file_is_refused(tmp_path: Path):
    with pytest.raises(ModelNotFoundError, match="no GGUF file"):
        resolve_model(str(tmp_path / "gone.gguf"))
