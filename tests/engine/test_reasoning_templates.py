"""Reasoning models' chat templates: the thinking switches reach the template, and a grammar lets the
thinking through before the shape it enforces."""

from __future__ import annotations

from typing import Literal

import pytest
from reasoning_templates import DEEPSEEK_R1, GPT_OSS, QWEN3, SMOLLM3

from homellm.engine.llama import LlamaEngine
from homellm.engine.templates import ChatTemplate
from homellm.generation import Reasoning, ResponseFormat

HELLO = [{"role": "user", "content": "Hello"}]


def test_each_familys_template_is_known_to_think_with_its_switches() -> None:
    styles = {name: ChatTemplate(source).thinking for name, source in
              {"qwen3": QWEN3, "deepseek_r1": DEEPSEEK_R1, "smollm3": SMOLLM3, "gpt_oss": GPT_OSS}.items()}
    assert all(style is not None for style in styles.values())
    assert {name: (s.switch, s.effort) for name, s in styles.items() if s} == {
        "qwen3": (True, False), "deepseek_r1": (False, False), "smollm3": (True, False), "gpt_oss": (False, True)}
    assert ChatTemplate(None).thinking is None  # ChatML, the fallback


def test_enable_thinking_reaches_the_template() -> None:
    template = ChatTemplate(QWEN3)
    assert template.render(HELLO).endswith("<|im_start|>assistant\n<think>\n")
    assert template.render(HELLO, enable_thinking=True).endswith("<|im_start|>assistant\n<think>\n")
    off = template.render(HELLO, enable_thinking=False)
    assert off.endswith("<think>\n\n</think>\n\n")
    assert template.thinking is not None and not template.thinking.reasoning(off).starts_inside
    smol = ChatTemplate(SMOLLM3)
    assert "/think" in smol.render(HELLO) and "/no_think" in smol.render(HELLO, enable_thinking=False)


def test_reasoning_effort_reaches_the_template() -> None:
    template = ChatTemplate(GPT_OSS)
    assert "Reasoning: medium" in template.render(HELLO)
    assert "Reasoning: high" in template.render(HELLO, reasoning_effort="high")


def test_earlier_thinking_is_left_out_of_the_history() -> None:
    turns = [*HELLO, {"role": "assistant", "content": "<think>\nsecret\n</think>\n\nHi!"},
             {"role": "user", "content": "Again"}]
    prompt = ChatTemplate(DEEPSEEK_R1).render(turns)
    assert "secret" not in prompt and "Hi!" in prompt


@pytest.mark.parametrize("reasoning", [Reasoning(starts_inside=True), Reasoning(),
                                       Reasoning("<|channel|>analysis<|message|>",
                                                 "<|end|><|start|>assistant<|channel|>final<|message|>")])
@pytest.mark.parametrize("kind", ["json_object", "json_schema"])
def test_a_grammar_after_thinking_is_one_llama_cpp_accepts(engine: LlamaEngine, reasoning: Reasoning,
                                                            kind: Literal["json_object", "json_schema"]) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    fmt = ResponseFormat(kind, schema if kind == "json_schema" else None, after_thinking=reasoning)
    gbnf = engine.grammar(fmt)
    assert gbnf is not None and gbnf.startswith("root ::= x-thought x-answer" if reasoning.starts_inside
                                                else "root ::= (")
    assert "x-answer ::=" in gbnf

