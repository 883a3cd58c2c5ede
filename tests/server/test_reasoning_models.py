"""Reasoning models through every dialect: `homellm serve` on copies of the built-in model that carry a
reasoning family's chat template, driven by the official clients.

The built-in weights never write <think> on their own; the Qwen3- and DeepSeek-R1-style templates open
the thought in the prompt, so what the model writes is its thinking until it writes </think>, and a plain
completion of the same prompt says what it wrote. Asked to repeat "I think so.</think>Yes.", the built-in
model does (at temperature 0): a closed thought, then an answer. Asked something else, it never closes it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import ollama
import openai
import pytest
from conftest import ServerProcess
from ggufs import copy_with_metadata
from reasoning_templates import DEEPSEEK_R1, QWEN3, chatml_prompt

QUESTION = "Hi! What is the capital of France?"
HI = [{"role": "user", "content": QUESTION}]
TOKENS = 12
ECHO = "Repeat exactly: I think so.</think>Yes."
SAY = [{"role": "user", "content": ECHO}]
GREEDY = {"temperature": 0}


def serve_with_template(builtin_path: Path, folder: Path, name: str, template: str) -> ServerProcess:
    model = copy_with_metadata(builtin_path, folder / f"{name}.gguf", {"tokenizer.chat_template": template})
    return ServerProcess(["--model", str(model), "--ctx", "1024", "--parallel", "2"], folder).wait_ready()


@pytest.fixture(scope="module")
def qwen3(builtin_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = serve_with_template(builtin_path, tmp_path_factory.mktemp("qwen3"), "qwen3", QWEN3)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def deepseek(builtin_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = serve_with_template(builtin_path, tmp_path_factory.mktemp("r1"), "r1", DEEPSEEK_R1)
    yield proc
    proc.stop()


def model_of(proc: ServerProcess) -> str:
    return proc.client().models.list().data[0].id


@functools.cache
def thought_of(proc: ServerProcess, tokens: int = TOKENS) -> str:
    """What the model thinks in `tokens` tokens, never closing its thought: a plain completion of the prompt
    its template renders."""
    client = proc.client()
    text = client.completions.create(model=model_of(proc), prompt=chatml_prompt(QUESTION), max_tokens=tokens,
                                     **GREEDY).choices[0].text
    assert text.strip() and "think>" not in text
    return text.strip()


@functools.cache
def closed_thought_of(proc: ServerProcess) -> tuple[str, str]:
    """The thinking and the answer the model writes when asked to repeat ECHO: split where it closes."""
    text = proc.client().completions.create(model=model_of(proc), prompt=chatml_prompt(ECHO), max_tokens=40,
                                            **GREEDY).choices[0].text
    assert text.count("</think>") == 1, f"the built-in model no longer repeats the close tag: {text!r}"
    thought, answer = text.split("</think>")
    assert thought.strip() and answer.strip()
    return thought.strip(), answer.lstrip()


def ollama_client(proc: ServerProcess) -> ollama.Client:
    return ollama.Client(host=proc.base_url)


def claude(proc: ServerProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proc.base_url, api_key="none", max_retries=0)


# OpenAI chat completions

def test_thinking_goes_to_reasoning_content_and_the_answer_to_content(qwen3: ServerProcess) -> None:
    answer = qwen3.client().chat.completions.create(model=model_of(qwen3), messages=SAY, max_tokens=40, **GREEDY)
    message = answer.choices[0].message
    extra = message.model_extra or {}
    thought, said = closed_thought_of(qwen3)
    assert extra["reasoning_content"] == thought == extra["reasoning"]
    assert message.content == said and "think>" not in message.content
    # The thought's tokens and the one that closes it; the answer's are not.
    assert 0 < answer.usage.completion_tokens_details.reasoning_tokens < answer.usage.completion_tokens


def test_an_unclosed_thought_is_all_reasoning(qwen3: ServerProcess) -> None:
    answer = qwen3.client().chat.completions.create(model=model_of(qwen3), messages=HI, max_tokens=TOKENS,
                                                    **GREEDY)
    message = answer.choices[0].message
    assert (message.model_extra or {})["reasoning_content"] == thought_of(qwen3)
    assert message.content == ""
    assert 0 < answer.usage.completion_tokens <= TOKENS  # ended (or cut off) inside its thought
    assert answer.usage.completion_tokens_details.reasoning_tokens == answer.usage.completion_tokens


def test_streamed_thinking_comes_in_reasoning_deltas_then_the_answer(qwen3: ServerProcess) -> None:
    chunks = list(qwen3.client().chat.completions.create(model=model_of(qwen3), messages=SAY, max_tokens=40,
                                                         stream=True, **GREEDY))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    thinking = [(d.model_extra or {}).get("reasoning_content") for d in deltas]
    thought, said = closed_thought_of(qwen3)
    assert "".join(t for t in thinking if t) == thought
    assert all((d.model_extra or {}).get("reasoning") == t for d, t in zip(deltas, thinking) if t)
    assert "".join(d.content or "" for d in deltas) == said
    assert sum(1 for t in thinking if t) > 1, "thinking streams as it comes, not at the end"
    last_thought = max(i for i, t in enumerate(thinking) if t)
    assert not any(d.content for d in deltas[:last_thought]), "the answer comes after the thinking"


def test_a_grammar_applies_after_the_thinking(qwen3: ServerProcess) -> None:
    schema = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"],
              "additionalProperties": False}
    message = qwen3.client().chat.completions.create(
        model=model_of(qwen3), messages=SAY, max_tokens=60, **GREEDY,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
    ).choices[0].message
    assert json.loads(message.content)["answer"] in ("yes", "no")  # the thinking is not in the answer
    assert (message.model_extra or {})["reasoning_content"] == closed_thought_of(qwen3)[0]


@pytest.mark.parametrize("switch", [{"reasoning_effort": "none"}, {"chat_template_kwargs": {"enable_thinking": False}}])
def test_thinking_off_renders_a_closed_thought_and_answers_in_content(qwen3: ServerProcess, switch: dict) -> None:
    message = qwen3.client().chat.completions.create(model=model_of(qwen3), messages=HI, max_tokens=TOKENS,
                                                     extra_body=switch, **GREEDY).choices[0].message
    written = qwen3.client().completions.create(model=model_of(qwen3), max_tokens=TOKENS, **GREEDY,
                                                prompt=chatml_prompt(QUESTION, opened="<think>\n\n</think>\n\n"))
    assert message.content == written.choices[0].text and message.content
    assert "reasoning_content" not in (message.model_extra or {})


def test_thinking_off_on_a_model_that_always_thinks_is_refused(deepseek: ServerProcess) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        deepseek.client().chat.completions.create(model=model_of(deepseek), messages=HI, max_tokens=2,
                                                  reasoning_effort="none")
    assert refused.value.body["param"] == "reasoning_effort" and "always thinks" in refused.value.body["message"]


def test_reasoning_effort_on_a_model_that_cannot_think_is_refused(server: ServerProcess) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        server.client().chat.completions.create(model=model_of(server), messages=HI, max_tokens=2,
                                                reasoning_effort="high")
    assert "does not support thinking" in refused.value.body["message"]
    plain = server.client().chat.completions.create(model=model_of(server), messages=HI, max_tokens=4)
    assert "reasoning_content" not in (plain.choices[0].message.model_extra or {})


@pytest.mark.parametrize("budget", [0, 2**63])
def test_a_reasoning_budget_of_zero_or_past_int32_is_a_400_naming_the_field(qwen3: ServerProcess,
                                                                            budget: int) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        qwen3.client().chat.completions.create(model=model_of(qwen3), messages=HI, max_tokens=2,
                                               extra_body={"thinking_budget_tokens": budget})
    assert refused.value.body["param"] == "thinking_budget_tokens"
    response = httpx.post(f"{qwen3.base_url}/v1/messages", timeout=30, json={
        "model": model_of(qwen3), "max_tokens": 2, "messages": HI, "thinking": {"type": "enabled", "budget_tokens": budget}})
    assert response.status_code == 400 and "budget_tokens" in response.json()["error"]["message"]
    # The server keeps serving.
    assert qwen3.client().chat.completions.create(model=model_of(qwen3), messages=HI, max_tokens=2).choices


# Ollama

def test_ollama_chat_gives_thinking_apart_and_honours_think_false(qwen3: ServerProcess) -> None:
    client = ollama_client(qwen3)
    thought, said = closed_thought_of(qwen3)
    answer = client.chat(model=model_of(qwen3), messages=SAY, options={**GREEDY, "num_predict": 40})
    assert answer.message.thinking == thought and answer.message.content == said
    streamed = list(client.chat(model=model_of(qwen3), messages=SAY, stream=True,
                                options={**GREEDY, "num_predict": 40}))
    assert "".join(c.message.thinking or "" for c in streamed) == thought
    assert "".join(c.message.content or "" for c in streamed) == said
    off = client.chat(model=model_of(qwen3), messages=HI, think=False, options={**GREEDY, "num_predict": TOKENS})
    assert off.message.thinking is None and off.message.content


def test_ollama_generate_gives_thinking_in_its_own_field(qwen3: ServerProcess) -> None:
    answer = ollama_client(qwen3).generate(model=model_of(qwen3), prompt=ECHO, think=True,
                                           options={**GREEDY, "num_predict": 40})
    assert (answer.thinking, answer.response) == closed_thought_of(qwen3)


def test_ollama_think_that_cannot_be_honoured_is_a_400(server: ServerProcess, deepseek: ServerProcess) -> None:
    with pytest.raises(ollama.ResponseError) as cannot:
        ollama_client(server).chat(model=model_of(server), messages=HI, think=True)
    assert cannot.value.status_code == 400 and "does not support thinking" in cannot.value.error
    with pytest.raises(ollama.ResponseError) as always:
        ollama_client(deepseek).chat(model=model_of(deepseek), messages=HI, think=False)
    assert always.value.status_code == 400 and "always thinks" in always.value.error


# Anthropic

def test_anthropic_thinking_blocks_when_thinking_is_enabled(qwen3: ServerProcess) -> None:
    message = claude(qwen3).messages.create(model=model_of(qwen3), max_tokens=40, messages=SAY,
                                            thinking={"type": "enabled", "budget_tokens": 1024},
                                            extra_body=GREEDY)
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert (message.content[0].thinking, message.content[1].text) == closed_thought_of(qwen3)
    with claude(qwen3).messages.stream(model=model_of(qwen3), max_tokens=40, messages=SAY,
                                       thinking={"type": "enabled", "budget_tokens": 1024},
                                       extra_body=GREEDY) as stream:
        deltas = [e.delta.thinking for e in stream if e.type == "content_block_delta"
                  and e.delta.type == "thinking_delta"]
        final = stream.get_final_message()
    assert "".join(deltas) == message.content[0].thinking == final.content[0].thinking
    assert final.content[1].text == message.content[1].text


def test_anthropic_without_thinking_leaves_it_out(qwen3: ServerProcess, deepseek: ServerProcess) -> None:
    # A model with the switch is asked not to think; one that always thinks has its thinking dropped.
    switched = claude(qwen3).messages.create(model=model_of(qwen3), max_tokens=TOKENS, messages=HI,
                                             extra_body=GREEDY)
    assert [b.type for b in switched.content] == ["text"]
    dropped = claude(deepseek).messages.create(model=model_of(deepseek), max_tokens=40, messages=SAY,
                                               extra_body=GREEDY)
    assert [b.type for b in dropped.content] == ["text"]
    assert dropped.content[0].text == closed_thought_of(deepseek)[1]


# Responses

def test_responses_give_a_reasoning_item_before_the_message(qwen3: ServerProcess) -> None:
    client = qwen3.client()
    response = client.responses.create(model=model_of(qwen3), input=ECHO, max_output_tokens=40,
                                       reasoning={"effort": "medium"}, **GREEDY)
    kinds = [item.type for item in response.output]
    assert kinds == ["reasoning", "message"]
    assert (response.output[0].content[0].text, response.output_text) == closed_thought_of(qwen3)
    events = list(client.responses.create(model=model_of(qwen3), input=ECHO, max_output_tokens=40,
                                          stream=True, **GREEDY))
    deltas = [e.delta for e in events if e.type == "response.reasoning_text.delta"]
    done = next(e for e in events if e.type == "response.completed")
    assert "".join(deltas) == response.output[0].content[0].text
    assert [item.type for item in done.response.output] == ["reasoning", "message"]
    assert done.response.output_text == response.output_text
    thought = response.usage.output_tokens_details.reasoning_tokens
    assert 0 < thought < response.usage.output_tokens
    assert done.response.usage.output_tokens_details.reasoning_tokens == thought


def test_responses_reasoning_on_a_model_that_cannot_think_is_ignored(server: ServerProcess) -> None:
    # Codex sends `reasoning` with every request.
    response = server.client().responses.create(model=model_of(server), input=QUESTION, max_output_tokens=4,
                                                reasoning={"effort": "high", "summary": "auto"})
    assert [item.type for item in response.output] == ["message"]
    assert response.usage.output_tokens_details.reasoning_tokens == 0 < response.usage.output_tokens
