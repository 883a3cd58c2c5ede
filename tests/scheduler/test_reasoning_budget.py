"""The reasoning budget: a reasoning model thinks at most N tokens, then its thinking is closed and it answers.

NOTE: these tests need the decode loop's enforcement of `SamplingParams.reasoning.budget`
(scheduler/loop.py), which is written apart from the rest of reasoning support (the server fills in
`reasoning`; the loop enforces it). Without it the tests that count thinking tokens fail. What the loop
must do, for a request whose `params.reasoning` is not None and has a `budget` N:

- count thinking tokens: from the first generated token when `reasoning.starts_inside`, else from the
  token after the one that completes `reasoning.open_tag` in the answer's text (at its start);
- stop counting once the answer's text holds `reasoning.close_tag` (the model closed it itself);
- after N thinking tokens without the close tag, write `reasoning.close_tag` itself: its tokens
  (tokenized as special text, no BOS) go into the sequence one by one in place of sampled ones, are
  accepted by the slot's sampler (so a grammar, which `ResponseFormat.after_thinking` makes expect the
  close tag, moves past it), and their text is emitted as TextDelta like any other; then sampling goes on;
- the forced tokens count as generated tokens (completion_tokens, max_tokens).

The built-in model never writes </think> on its own; a template whose generation prompt opens <think>
makes everything it writes thinking, so what comes after a forced close tag is the answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest
from conftest import ServerProcess
from ggufs import copy_with_metadata
from reasoning_templates import DEEPSEEK_R1, QWEN3, SMOLLM3, chatml_prompt

from homellm.engine.llama import EngineOptions
from homellm.generation import ResponseFormat, SamplingParams, Thinking
from homellm.models.resolve import ModelRef
from homellm.scheduler import Scheduler

QUESTION = "Hi! What is the capital of France?"
HI = [{"role": "user", "content": QUESTION}]
CLOSE = "</think>"
SMOLLM3_PROMPT = ("<|im_start|>system\n## Metadata\nReasoning Mode: /think<|im_end|>\n"
                  + chatml_prompt(QUESTION, opened=""))


@pytest.fixture(scope="module")
def thinkers(builtin_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scheduler]:
    """The built-in model under three reasoning templates, and a scheduler with a default budget of 7."""
    folder = tmp_path_factory.mktemp("thinkers")
    scheduler = Scheduler(reasoning_budget=7)
    for name, template in (("r1", DEEPSEEK_R1), ("qwen3", QWEN3), ("smollm3", SMOLLM3)):
        path = copy_with_metadata(builtin_path, folder / f"{name}.gguf", {"tokenizer.chat_template": template})
        scheduler.add(ModelRef(name, path), EngineOptions(n_ctx=1024, n_parallel=2))
    for status in scheduler.statuses():
        scheduler.runner(status.name).wait_loaded()
    yield scheduler
    scheduler.close()


def answer(scheduler: Scheduler, model: str, max_tokens: int, budget: int | None = None,
           thinking: Thinking | None = None, fmt: ResponseFormat = ResponseFormat()) -> str:
    """The whole raw text of a greedy answer (thinking, tags and all)."""
    async def run() -> str:
        asked = thinking or Thinking(budget=budget, strict=False)
        generation = await scheduler.chat(model, HI, SamplingParams(max_tokens=max_tokens, temperature=0,
                                                                    response_format=fmt), thinking=asked)
        text, _ = await generation.collect()
        return text

    return asyncio.run(run())


def raw(scheduler: Scheduler, model: str, max_tokens: int, prompt: str = chatml_prompt(QUESTION)) -> str:
    """What the model writes after the prompt its template renders (thinking on), with no budget and no split."""
    async def run() -> str:
        generation = await scheduler.complete(model, prompt, SamplingParams(max_tokens=max_tokens, temperature=0))
        text, _ = await generation.collect()
        return text

    return asyncio.run(run())


def test_thinking_is_closed_after_the_budget(thinkers: Scheduler) -> None:
    thought = raw(thinkers, "r1", max_tokens=5)  # the first 5 tokens the model thinks, unbudgeted
    assert CLOSE not in thought
    text = answer(thinkers, "r1", max_tokens=40, budget=5)
    assert text.count(CLOSE) == 1, text
    assert text.split(CLOSE)[0] == thought


def test_the_servers_default_budget_applies_when_the_request_sets_none(thinkers: Scheduler) -> None:
    thought = raw(thinkers, "r1", max_tokens=7)
    text = answer(thinkers, "r1", max_tokens=30)  # the scheduler's reasoning_budget=7
    assert text.split(CLOSE)[0] == thought and CLOSE in text


def test_a_thought_within_its_budget_is_left_alone(thinkers: Scheduler) -> None:
    assert answer(thinkers, "r1", max_tokens=20, budget=1000) == raw(thinkers, "r1", max_tokens=20)


def test_the_budget_counts_only_inside_a_thought(thinkers: Scheduler) -> None:
    # SmolLM3's template with thinking on leaves the model to open its thought; the built-in model does not.
    plain = raw(thinkers, "smollm3", max_tokens=16, prompt=SMOLLM3_PROMPT)
    assert "<think>" not in plain
    assert answer(thinkers, "smollm3", max_tokens=16, budget=2) == plain


def test_the_close_tag_written_by_the_loop_leads_into_the_grammars_shape(thinkers: Scheduler) -> None:
    thought = raw(thinkers, "r1", max_tokens=4)
    text = answer(thinkers, "r1", max_tokens=60, budget=4, fmt=ResponseFormat("json_object"))
    before, _, after = text.partition(CLOSE)
    assert before == thought
    assert isinstance(json.loads(after), dict)


# What the loop needs from the rest (passes without the loop's enforcement).

def test_the_request_carries_its_budget_and_markers_to_the_loop(thinkers: Scheduler) -> None:
    async def reasoning(model: str, thinking: Thinking):  # type: ignore[no-untyped-def]
        generation = await thinkers.chat(model, HI, SamplingParams(max_tokens=1, temperature=0), thinking=thinking)
        await generation.collect()
        return generation.reasoning

    r1 = asyncio.run(reasoning("r1", Thinking(budget=12, strict=False)))
    assert r1 is not None and (r1.open_tag, r1.close_tag, r1.starts_inside, r1.budget) == ("<think>", CLOSE, True, 12)
    assert asyncio.run(reasoning("r1", Thinking(strict=False))).budget == 7  # the scheduler's default
    off = asyncio.run(reasoning("qwen3", Thinking(enabled=False)))
    assert off is not None and not off.starts_inside and off.budget is None  # no thinking, nothing to count
    smol = asyncio.run(reasoning("smollm3", Thinking(budget=3)))
    assert smol is not None and not smol.starts_inside and smol.budget == 3


# Through the server and the official clients.

@pytest.fixture(scope="module")
def budgeted(builtin_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("budgeted")
    model = copy_with_metadata(builtin_path, folder / "qwen3.gguf", {"tokenizer.chat_template": QWEN3})
    proc = ServerProcess(["--model", str(model), "--ctx", "1024", "--parallel", "1", "--reasoning-budget", "6"],
                         folder).wait_ready()
    yield proc
    proc.stop()


def model_of(client: openai.OpenAI) -> str:
    return client.models.list().data[0].id


def test_serve_reasoning_budget_closes_the_thinking(budgeted: ServerProcess) -> None:
    client = budgeted.client()
    model = model_of(client)
    unbudgeted = client.completions.create(model=model, prompt=chatml_prompt(QUESTION), max_tokens=6,
                                           temperature=0).choices[0].text
    message = client.chat.completions.create(model=model, messages=HI, max_tokens=40,
                                             temperature=0).choices[0].message
    extra = message.model_extra or {}
    assert extra["reasoning_content"] == unbudgeted.strip() == extra["reasoning"]
    assert CLOSE not in (message.content or "")


def test_a_requests_budget_wins_over_the_servers(budgeted: ServerProcess) -> None:
    client = budgeted.client()
    six = client.chat.completions.create(model=model_of(client), messages=HI, max_tokens=40, temperature=0)
    three = client.chat.completions.create(model=model_of(client), messages=HI, max_tokens=40, temperature=0,
                                           extra_body={"thinking_budget_tokens": 3})
    short, long = (m.choices[0].message.model_extra["reasoning_content"] for m in (three, six))
    assert long.startswith(short) and len(short) < len(long)


def test_anthropic_budget_tokens_is_the_reasoning_budget(budgeted: ServerProcess) -> None:
    claude = anthropic.Anthropic(base_url=budgeted.base_url, api_key="none", max_retries=0)
    message = claude.messages.create(model=model_of(budgeted.client()), max_tokens=40, messages=HI,
                                     thinking={"type": "enabled", "budget_tokens": 3},
                                     extra_body={"temperature": 0})
    thinking = [block for block in message.content if block.type == "thinking"]
    assert len(thinking) == 1 and thinking[0].thinking
    unbudgeted = budgeted.client().completions.create(model=model_of(budgeted.client()), prompt=chatml_prompt(QUESTION),
                                                      max_tokens=3, temperature=0).choices[0].text
    assert thinking[0].thinking == unbudgeted.strip()
