"""Sampling defaults: the GGUF's recommendation where it has one, homellm's otherwise, the request's always."""

from __future__ import annotations

from homellm.generation import ResponseFormat, SamplingDefaults, SamplingParams
from homellm.models.sampling import recommended_sampling


def test_a_file_without_sampling_keys_gets_homellms_defaults():
    defaults = recommended_sampling({"general.architecture": "llama"})
    assert defaults == SamplingDefaults()
    assert (defaults.temperature, defaults.top_k, defaults.top_p, defaults.min_p) == (0.8, 40, 0.9, 0.05)
    assert (defaults.repeat_penalty, defaults.repeat_last_n) == (1.1, 64)
    assert defaults.source("temperature") == "homellm"


def test_the_files_keys_win_typed_or_as_llama_cpp_strings():
    typed = recommended_sampling({"general.sampling.temp": 0.6, "general.sampling.top_k": 20,
                                  "general.sampling.top_p": 0.95, "general.sampling.penalty_last_n": -1})
    assert (typed.temperature, typed.top_k, typed.top_p, typed.repeat_last_n) == (0.6, 20, 0.95, -1)
    assert typed.from_model == {"temperature", "top_k", "top_p", "repeat_last_n", "repeat_penalty"}
    assert typed.repeat_penalty == 1.0, "a recipe that names no penalty means none"
    assert typed.source("top_k") == "model file" and typed.source("min_p") == "homellm"
    strings = recommended_sampling({"general.sampling.min_p": "0.000000", "general.sampling.penalty_repeat": "1.05"})
    assert (strings.min_p, strings.repeat_penalty) == (0.0, 1.05)


def test_values_out_of_range_in_the_file_are_ignored():
    hostile = recommended_sampling({
        "general.sampling.temp": "nan", "general.sampling.top_k": -5, "general.sampling.top_p": 0.0,
        "general.sampling.min_p": 3.0, "general.sampling.penalty_repeat": "lots", "general.sampling.penalty_last_n": 2.5,
    })
    assert hostile == SamplingDefaults()


def test_a_requests_explicit_values_win_and_temperature_zero_stays():
    defaults = SamplingDefaults(temperature=0.6, top_k=20, from_model=frozenset({"temperature", "top_k"}))
    filled = SamplingParams(temperature=0.0, top_k=5, max_tokens=9).with_defaults(defaults)
    assert (filled.temperature, filled.top_k, filled.max_tokens) == (0.0, 5, 9)
    assert (filled.top_p, filled.repeat_penalty, filled.repeat_last_n) == (0.9, 1.1, 64)
    untouched = SamplingParams().with_defaults(defaults)
    assert (untouched.temperature, untouched.top_k) == (0.6, 20)


def test_output_under_a_grammar_gets_no_default_repeat_penalty():
    defaults = SamplingDefaults()
    for kind in ("json_object", "json_schema", "tool_calls"):
        structured = SamplingParams(response_format=ResponseFormat(kind)).with_defaults(defaults)
        assert structured.repeat_penalty == 1.0 and structured.temperature == 0.8, kind
    asked = SamplingParams(repeat_penalty=1.3, response_format=ResponseFormat("json_object")).with_defaults(defaults)
    assert asked.repeat_penalty == 1.3
