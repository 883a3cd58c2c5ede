from pathlib import Path

import pytest

from homellm.config import DEFAULT_PORT, Settings
from homellm.errors import HomellmError


def test_defaults_bind_loopback_on_a_port_apart_from_ollama_and_lm_studio():
    settings = Settings.from_env({})
    assert settings.host == "127.0.0.1"
    assert settings.port == DEFAULT_PORT and DEFAULT_PORT not in (11434, 1234)
    assert settings.api_key is None


def test_environment_overrides(tmp_path):
    env = {"HOMELLM_HOME": str(tmp_path), "HOMELLM_HOST": "0.0.0.0", "HOMELLM_PORT": "9000",
           "HOMELLM_API_KEY": "k"}
    settings = Settings.from_env(env)
    assert (settings.home, settings.host, settings.port, settings.api_key) == (Path(tmp_path), "0.0.0.0", 9000, "k")


def test_port_that_is_not_a_number_is_refused_with_a_hint():
    with pytest.raises(HomellmError, match="HOMELLM_PORT") as info:
        Settings.from_env({"HOMELLM_PORT": "abc"})
    assert info.value.hint


def test_home_defaults_to_the_users_data_directory(monkeypatch):
    import sys
    monkeypatch.setattr(sys, "platform", "linux")
    assert Settings.from_env({"XDG_DATA_HOME": "/data"}).home == Path("/data/homellm")
    assert Settings.from_env({}).home == Path.home() / ".local" / "share" / "homellm"
    assert Settings.from_env({"HOMELLM_HOME": "/x/y", "XDG_DATA_HOME": "/data"}).home == Path("/x/y")
