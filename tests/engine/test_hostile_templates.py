"""Chat templates are code from downloaded files: each render has a budget of time, size and iterations.

A template that is hostile on any conversation is refused when it is compiled (at model load); one that
is hostile only on some conversations is refused at that render, as a TemplateError (a 500 naming it).
"""

from __future__ import annotations

import pytest
from tool_templates import STYLES

from homellm.engine.templates import (
    BASE_RENDER_CHARS,
    RANGE_ITERATIONS,
    ChatTemplate,
    RenderBudget,
)
from homellm.errors import TemplateError
from homellm.models.builtin import builtin_model_path
from homellm.models.gguf import read_header

# Each spends without bound whatever the conversation: refused at compile time.
HOSTILE = {
    "python internals": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "string times a billion": "{{ ('x' * 1000000000)|length }}",
    "huge power": "{{ (10 ** 1000000)|string|length }}",
    "doubling in a loop": "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
                          "{% endfor %}{{ ns.s|length }}",
    "replace growing": "{% set ns = namespace(s='xx') %}{% for i in range(64) %}"
                       "{% set ns.s = ns.s|replace('x', 'xxx') %}{% endfor %}{{ ns.s }}",
    "nested loops for ever": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x",
    "a megabyte per message": "{% for m in messages %}{{ m.content }}{% for i in range(100000) %}0123456789"
                              "{% endfor %}{% endfor %}",
    "padding filter": "{{ 'x'|center(1000000000) }}",
    "printf width": "{{ '%999999999s'|format('x') }}",
    "str.format width": "{{ '{:>999999999}'.format('x') }}",
    "str method width": "{{ 'x'.ljust(999999999) }}",
    "list times a lot": "{{ (range(100000)|list) * 100000 }}",
}


@pytest.mark.parametrize("source", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_template_is_refused_when_it_is_compiled(source):
    with pytest.raises(TemplateError, match="unsafe operation") as info:
        ChatTemplate(source)
    assert info.value.status == 500
    assert "hostile" in info.value.hint


def test_template_hostile_only_on_long_messages_is_refused_at_that_render():
    # 200 copies of each message: harmless on a short one, past the budget on a 2,000-character message.
    template = ChatTemplate("{% for m in messages %}{% for i in range(200) %}{{ m.content }}{% endfor %}"
                            "{% endfor %}")
    assert len(template.render([{"role": "user", "content": "short"}])) == 1000
    with pytest.raises(TemplateError, match="wrote more than"):
        template.render([{"role": "user", "content": "y" * 2000}])
    # The budget is per render: the next conversation starts afresh.
    assert len(template.render([{"role": "user", "content": "ok"}])) == 400


def test_budget_grows_with_what_the_template_is_given():
    small = RenderBudget.for_input([{"role": "user", "content": "hi"}])
    large = RenderBudget.for_input([{"role": "user", "content": "x" * 3_000_000}])
    assert small.max_chars < BASE_RENDER_CHARS + 200
    assert large.max_chars > 4 * 3_000_000
    assert small.iterations == RANGE_ITERATIONS


def test_real_templates_render_long_conversations_within_their_budget():
    builtin = read_header(builtin_model_path()).metadata["tokenizer.chat_template"]
    conversation = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "word " * 200}
                    for i in range(1001)]
    tools = [{"type": "function", "function": {"name": "lookup", "description": "Look a word up.",
                                               "parameters": {"type": "object",
                                                              "properties": {"word": {"type": "string"}}}}}]
    for name, source in {"builtin": builtin, **STYLES}.items():
        template = ChatTemplate(source)
        text = template.render(conversation, tools=tools)
        assert "turn 1000" in text, name
        assert len(text) > 1_000_000, name  # a long conversation renders whole: the budget follows the input


def test_ranges_in_real_use_still_work():
    template = ChatTemplate("{% for i in range(messages|length - 1, -1, -1) %}{{ messages[i].content }}"
                            "{% endfor %}|{{ range(3)|list|length }}|{{ range(10)[2:5]|list }}")
    assert template.render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]) == "ba|3|[2, 3, 4]"
