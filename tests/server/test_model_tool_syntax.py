"""Models whose chat template knows tools get them through the template and write calls in their own
syntax, read back into OpenAI's and Anthropic's shapes: `homellm serve` on tiny random GGUFs that
carry each style's template, driven by the official clients.

A random model says nothing sensible; held to its syntax's grammar it still writes calls, so what
is tested is the path: template, grammar, parser, response shape, and history rendered back.
Each request asks for one call (parallel calls off): a random model offered a list may write 8 calls,
which 200 tokens cannot hold; one call of these bounded schemas takes well under 100.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import jsonschema
import openai
import pytest
from conftest import ServerProcess
from ggufs import write_tiny_dense
from tool_templates import STYLES

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8},
                                                    "unit": {"enum": ["c", "f"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
ALARM = {"type": "function", "function": {
    "name": "set_alarm", "description": "Set an alarm.",
    "parameters": {"type": "object", "properties": {"hour": {"type": "integer"},
                                                    "loud": {"type": "boolean"}},
                   "required": ["hour", "loud"], "additionalProperties": False}}}
TOOLS = [WEATHER]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, ALARM)}
# A call id longer than Mistral's templates accept: it must reach the template as one they do.
EARLIER = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_0123456789abcdef01234567", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "c"}'}}]},
    {"role": "tool", "tool_call_id": "call_0123456789abcdef01234567", "content": "sunny, 21 C"},
    {"role": "user", "content": "And in Rome?"},
]


@pytest.fixture(scope="module", params=["hermes", "llama3", "mistral", "gemma"])
def styled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp(f"styled-{request.param}")
    model = write_tiny_dense(folder / f"tiny-{request.param}.gguf", chat_template=STYLES[request.param])
    proc = ServerProcess(["--model", str(model), "--ctx", "1024", "--parallel", "1"], folder).wait_ready()
    yield proc
    proc.stop()


def model_of(client: openai.OpenAI) -> str:
    return client.models.list().data[0].id


def validate(name: str, arguments: str | dict) -> None:
    jsonschema.validate(json.loads(arguments) if isinstance(arguments, str) else arguments, SCHEMAS[name])


def test_calls_in_the_models_syntax_come_back_as_openai_tool_calls(styled: ServerProcess) -> None:
    client = styled.client()
    answer = client.chat.completions.create(
        model=model_of(client), messages=[{"role": "user", "content": "Weather in Oslo?"}], tools=TOOLS,
        tool_choice="required", parallel_tool_calls=False, temperature=0.7, seed=3, max_tokens=200)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls, choice
    for call in choice.message.tool_calls:
        assert call.function.name == "get_weather" and call.id.startswith("call_")
        validate(call.function.name, call.function.arguments)


def test_streamed_calls_arrive_whole_with_ids(styled: ServerProcess) -> None:
    client = styled.client()
    chunks = list(client.chat.completions.create(
        model=model_of(client), messages=[{"role": "user", "content": "Set an alarm."}], tools=[WEATHER, ALARM],
        tool_choice={"type": "function", "function": {"name": "set_alarm"}}, parallel_tool_calls=False,
        temperature=0.7, seed=5,
        max_tokens=200, stream=True))
    named = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or [] if d.id]
    arguments = [d.function.arguments for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []
                 if d.function and d.function.arguments]
    assert named and all(d.function.name == "set_alarm" for d in named)
    assert len(arguments) == len(named)
    for text in arguments:
        validate("set_alarm", text)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_a_past_call_and_its_result_render_through_the_template(styled: ServerProcess) -> None:
    client = styled.client()
    answer = client.chat.completions.create(model=model_of(client), messages=EARLIER, tools=TOOLS,
                                            tool_choice="required", parallel_tool_calls=False, temperature=0.7,
                                            seed=7, max_tokens=200)
    assert answer.choices[0].message.tool_calls
    for call in answer.choices[0].message.tool_calls:
        validate(call.function.name, call.function.arguments)
    # With the tools offered, the history takes more tokens than the same turns without them.
    bare = client.chat.completions.create(model=model_of(client), messages=EARLIER, max_tokens=1)
    assert answer.usage.prompt_tokens > bare.usage.prompt_tokens


def test_anthropic_tool_use_blocks_from_the_models_syntax(styled: ServerProcess) -> None:
    claude = anthropic.Anthropic(base_url=styled.base_url, api_key="none")
    message = claude.messages.create(
        model=model_of(styled.client()), max_tokens=200, tool_choice={"type": "any", "disable_parallel_tool_use": True},
        tools=[{"name": "get_weather", "description": "Current weather in a city.",
                "input_schema": WEATHER["function"]["parameters"]}],
        messages=[{"role": "user", "content": "Weather in Oslo?"}], extra_body={"temperature": 0.7})
    uses = [b for b in message.content if b.type == "tool_use"]
    assert uses and message.stop_reason == "tool_use"
    for use in uses:
        validate(use.name, use.input)

