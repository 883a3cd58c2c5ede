"""Tool calls in each model family's own syntax: templates of each style inside tiny GGUFs, and a
random tiny model that, held to the syntax's grammar, writes calls that parse and validate.

The templates here are written for these tests in the manner of each family (tools rendered where
that family puts them, past calls in its call syntax); they are not copies of the models' own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
from tool_templates import STYLES

from homellm.engine.grammar import (
    CALL_OPENERS,
    call_turn_grammar,
    calls_grammar,
    check_grammar,
)
from homellm.engine.llama import EngineOptions, LlamaEngine
from homellm.engine.templates import ChatTemplate, call_syntax_of
from homellm.errors import InvalidRequestError
from homellm.generation import SamplingParams
from homellm.models.gguf import read_header
from homellm.tools.call_syntax import (
    arguments_key,
    call_object_schema,
    gemma_history,
    gemma_tool_prompt,
    hf_history,
    parse_calls,
    starts_a_call,
    template_knows_tools,
)

MAX_PARALLEL_CALLS = 8  # as tools/calling.py's; engine code takes it as a number

EXPECTED_SYNTAX = {"hermes": "hermes", "smollm3": "hermes", "llama3": "llama3", "mistral": "mistral", "gemma": "gemma"}


@dataclass(frozen=True)
class Offered:
    name: str
    description: str
    parameters: dict


# Bounded strings and numbers keep a random model's calls short.
TOOLS = [
    Offered("get_weather", "Weather for a city.", {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 8}, "days": {"type": "integer"},
                       "unit": {"enum": ["c", "f"]}},
        "required": ["city"]}),
    Offered("set_alarm", "Set an alarm.", {
        "type": "object",
        "properties": {"hour": {"type": "integer"}, "loud": {"type": "boolean"},
                       "tags": {"type": "array", "items": {"enum": ["work", "home"]}, "maxItems": 2}},
        "required": ["hour", "loud"]}),
    Offered("plot", "Plot a point.", {
        "type": "object",
        "properties": {"at": {"$ref": "#/$defs/Point"}, "note": {"anyOf": [{"type": "string", "maxLength": 4}, {"type": "null"}]}},
        "required": ["at"],
        "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                            "required": ["x", "y"], "additionalProperties": False}}}),
]
OPENAI_TOOLS = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                   "parameters": t.parameters}} for t in TOOLS]
HISTORY = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_0123456789abcdef01234567", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_0123456789abcdef01234567", "content": "sunny, 21 C"},
    {"role": "user", "content": "And set an alarm at 7."},
]


@pytest.fixture(scope="module")
def template_ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny model with each style's chat template in its metadata."""
    from ggufs import write_tiny_dense

    folder = tmp_path_factory.mktemp("call-syntax")
    return {style: write_tiny_dense(folder / f"{style}.gguf", chat_template=source) for style, source in STYLES.items()}


@pytest.fixture(scope="module")
def tiny_engine(tiny_dense_path: Path):
    loaded = LlamaEngine(tiny_dense_path, EngineOptions(n_ctx=2048, n_batch=2048, n_threads=2))
    yield loaded
    loaded.close()


def file_template(path: Path) -> ChatTemplate:
    """The chat template a GGUF carries, as the engine compiles it."""
    return ChatTemplate(read_header(path).metadata["tokenizer.chat_template"], bos_token="<s>", eos_token="</s>")


def prompt_for(style: str, path: Path, messages: list[dict]) -> str:
    """The prompt a model of this style gets: tools through its template, or a homellm prompt for Gemma."""
    template = file_template(path)
    syntax = template.call_syntax
    if template_knows_tools(syntax):
        return template.render(hf_history(messages, syntax), tools=OPENAI_TOOLS)
    prompt = gemma_tool_prompt(TOOLS, text_allowed=True, parallel=True)
    return template.render(gemma_history([{"role": "system", "content": prompt}, *messages]))


def generate(engine: LlamaEngine, prompt: str, gbnf: str, max_tokens: int, seed: int) -> tuple[str, bool]:
    """The text the model writes under the grammar, and whether it ended the turn itself."""
    check_grammar(gbnf, engine._vocab)  # a grammar llama.cpp cannot parse would crash the sampler chain
    tokens = engine.tokenize(prompt)
    sampler = engine.sampler(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                                            seed=seed), gbnf)
    batch = engine.new_batch()
    out: list[int] = []
    try:
        engine.keep_prefix(0, 0)
        index = batch.add_run(tokens, 0, 0, logits_last=True)
        for step in range(max_tokens):
            engine.decode(batch)
            token = engine.sample(sampler, index)
            if engine.is_end(token):
                return b"".join(engine.piece(t) for t in out).decode("utf-8", "replace"), True
            out.append(token)
            batch.clear()
            index = batch.add(token, len(tokens) + step, 0, True)
    finally:
        batch.close()
        sampler.close()
    return b"".join(engine.piece(t) for t in out).decode("utf-8", "replace"), False


def assert_valid_calls(calls: list[tuple[str, dict]] | None, max_calls: int, tools: list[Offered] = TOOLS) -> None:
    assert calls is not None and 1 <= len(calls) <= max_calls
    offered = {t.name: t.parameters for t in tools}
    for name, arguments in calls:
        assert name in offered
        jsonschema.validate(arguments, offered[name])


# The templates

@pytest.mark.parametrize("style", list(STYLES))
def test_a_template_in_a_gguf_names_its_call_syntax(style: str, template_ggufs: dict[str, Path]):
    assert file_template(template_ggufs[style]).call_syntax == EXPECTED_SYNTAX[style]


@pytest.mark.parametrize("style, before, after", [
    ("hermes", "<tools>\n", "</tools>"),
    ("smollm3", "<tools>", "</tools>"),
    ("llama3", "Environment: ipython", "<|eot_id|>"),
    ("mistral", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]"),
    ("gemma", "```python", "<end_of_turn>"),
])
def test_the_tools_are_rendered_where_the_style_puts_them(style, before, after, template_ggufs):
    prompt = prompt_for(style, template_ggufs[style], HISTORY)
    start = prompt.index(before)
    section = prompt[start:prompt.index(after, start)]
    assert all(t.name in section for t in TOOLS)
    # Mistral offers the tools just before the last user message, not the first.
    if style == "mistral":
        assert prompt.index("Weather in Paris?") < start < prompt.index("And set an alarm at 7.")


@pytest.mark.parametrize("style, call_text", [
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'),
    ("smollm3", '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'),
    ("llama3", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}'),
    ("gemma", '```tool_code\nget_weather(city="Paris")\n```'),
])
def test_a_past_call_is_rendered_in_the_syntax_the_parser_reads(style, call_text, template_ggufs):
    assert call_text in prompt_for(style, template_ggufs[style], HISTORY)
    assert parse_calls(EXPECTED_SYNTAX[style], call_text) == [("get_weather", {"city": "Paris"})]


def test_mistral_past_calls_carry_nine_character_ids_its_template_demands(template_ggufs):
    prompt = prompt_for("mistral", template_ggufs["mistral"], HISTORY)
    shown = prompt[prompt.index("[TOOL_CALLS]"):prompt.index("</s>")]
    calls = parse_calls("mistral", shown)
    assert calls == [("get_weather", {"city": "Paris"})]
    call_id = hf_history(HISTORY, "mistral")[1]["tool_calls"][0]["id"]
    assert f'"call_id": "{call_id}"' in prompt
    with pytest.raises(InvalidRequestError, match="9 letters"):
        file_template(template_ggufs["mistral"]).render(hf_history(HISTORY, "hermes"), tools=OPENAI_TOOLS)


def test_without_tools_a_template_sees_none_defined():
    template = ChatTemplate("{{ 'tools' if tools is defined else 'none' }} {{ xml_tools is defined }}")
    assert template.render([]) == "none False"
    assert template.render([], tools=[]) == "tools True"


# The grammars, and a random model held to them

@pytest.mark.parametrize("syntax", list(CALL_OPENERS))
def test_every_call_grammar_is_one_llama_cpp_parses(syntax: str, tiny_engine: LlamaEngine):
    schema = call_object_schema(TOOLS, arguments_key(syntax))
    for max_calls in (1, MAX_PARALLEL_CALLS):
        for text_allowed in (False, True):
            check_grammar(calls_grammar(syntax, schema, max_calls, text_allowed), tiny_engine._vocab)


CHATML_HI = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


# Grammar sampling checks the whole vocabulary at every token: few seeds and short outputs keep this quick.
@pytest.mark.parametrize("style", list(STYLES))
@pytest.mark.parametrize("max_calls", [1, 3])
def test_random_model_under_the_grammar_writes_calls_that_parse_and_validate(
        style: str, max_calls: int, template_ggufs: dict[str, Path], tiny_engine: LlamaEngine):
    syntax = EXPECTED_SYNTAX[style]
    gbnf = calls_grammar(syntax, call_object_schema(TOOLS, arguments_key(syntax)), max_calls)
    # A call here takes at most about 120 tokens (8-character strings whose characters may each be a
    # 6-token escape, 16-digit integers): room for every call the grammar allows, whatever the sampler picks.
    text, ended = generate(tiny_engine, prompt_for(style, template_ggufs[style], HISTORY), gbnf,
                           max_tokens=120 * max_calls + 100, seed=max_calls)
    assert ended, text
    assert starts_a_call(syntax, text) is True
    assert_valid_calls(parse_calls(syntax, text), max_calls)


@pytest.mark.parametrize("syntax", list(CALL_OPENERS))
def test_with_text_allowed_the_answer_is_a_call_or_text_that_cannot_be_mistaken_for_one(
        syntax: str, tiny_engine: LlamaEngine):
    gbnf = calls_grammar(syntax, call_object_schema(TOOLS, arguments_key(syntax)), 3, text_allowed=True)
    for seed in (1, 2):
        text, ended = generate(tiny_engine, CHATML_HI, gbnf,
                               max_tokens=24, seed=seed)
        if starts_a_call(syntax, text):
            if ended:
                assert_valid_calls(parse_calls(syntax, text), 3)
        else:
            assert text and text[0] not in CALL_OPENERS[syntax] + " \t\n\r"
            assert parse_calls(syntax, text) is None


@pytest.mark.parametrize("syntax", ["gemma", "llama3"])
def test_tools_with_no_required_arguments_get_valid_calls(syntax: str, tiny_engine: LlamaEngine):
    tools = [Offered("now", "The time.", {"type": "object", "properties": {}}),
             Offered("search", "Search.", {"type": "object", "properties": {
                 "q": {"enum": ["a", "b"]}, "limit": {"type": "integer"}, "exact": {"type": "boolean"}}})]
    gbnf = calls_grammar(syntax, call_object_schema(tools, arguments_key(syntax)), 3)
    text, ended = generate(tiny_engine, CHATML_HI, gbnf, max_tokens=150, seed=3)
    assert ended, text
    assert_valid_calls(parse_calls(syntax, text), 3, tools)


def test_gemma_strings_hold_no_raw_line_break_python_could_not_read():
    gbnf = calls_grammar("gemma", call_object_schema(TOOLS))
    char = next(line for line in gbnf.splitlines() if line.startswith("char ::="))
    assert "\\x00-\\x1F" in char and "/" not in char


def test_gemma_grammar_refuses_arguments_python_cannot_name():
    odd = Offered("lookup", "", {"type": "object", "properties": {"class": {"type": "string"}}})
    with pytest.raises(InvalidRequestError, match="not a Python name"):
        calls_grammar("gemma", call_object_schema([odd]))


def test_a_text_answer_may_not_start_with_the_syntax_opening():
    gbnf = call_turn_grammar("mistral", 'root ::= "{}"', max_calls=3, text_allowed=True)
    assert 'x-text ::= [^\\[{ \\t\\n\\r]' in gbnf and "{0,2}" in gbnf and 'x-call ::= "{}"' in gbnf


# Telling the syntax from the template

@pytest.mark.parametrize("source, syntax", [
    (None, "json"),
    ("{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}", "json"),
    ("{% if tools %}<tools>{{ tools | tojson }}</tools> reply in <tool_call></tool_call>{% endif %}<|im_start|>",
     "hermes"),
    ("<|start_header_id|>{% if tools is not none %}Environment: ipython{% endif %}", "llama3"),
    ("{{ '<|python_tag|>' + call | tojson }}", "llama3"),
    ("<|start_header_id|>user<|end_header_id|>{{ m.content }}", "json"),  # Llama 3.0: no tools
    ("[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS][INST]", "mistral"),
    ("{{ '[TOOL_CALLS]' }}[INST]", "mistral"),
    ("<start_of_turn>user\n{{ m.content }}<end_of_turn>", "gemma"),
])
def test_template_source_names_its_call_syntax(source, syntax):
    assert call_syntax_of(source) == syntax
