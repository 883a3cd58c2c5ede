import pytest

from homellm.engine.templates import ChatTemplate, TemplateRaisedError
from homellm.errors import InvalidRequestError, TemplateError

MESSAGES = [{"role": "user", "content": "hi"}]


def test_missing_template_falls_back_to_chatml():
    template = ChatTemplate(None)
    assert not template.from_model
    assert template.render(MESSAGES) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_template_cannot_reach_python_internals():
    hostile = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(TemplateError, match="unsafe"):
        ChatTemplate(hostile).render(MESSAGES)


def test_template_cannot_mutate_its_inputs():
    mutating = "{% set _ = messages.append({'role': 'x'}) %}{{ messages | length }}"
    with pytest.raises(TemplateError):
        ChatTemplate(mutating).render(MESSAGES)


def test_raise_exception_in_template_is_a_bad_request():
    refusing = "{{ raise_exception('roles must alternate') }}"
    with pytest.raises(TemplateRaisedError, match="roles must alternate") as info:
        ChatTemplate(refusing).render(MESSAGES)
    assert isinstance(info.value, InvalidRequestError)


def test_template_that_does_not_compile_is_reported():
    with pytest.raises(TemplateError, match="does not compile"):
        ChatTemplate("{% for %}")


def test_tojson_keeps_non_ascii_text():
    assert ChatTemplate("{{ messages[0] | tojson }}").render([{"role": "user", "content": "é"}]) \
        == '{"role": "user", "content": "é"}'


def test_builtin_template_renders_system_prompt_first(engine):
    prompt = engine.render_chat([{"role": "system", "content": "Be brief."}, *MESSAGES])
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert prompt.endswith("<|im_start|>assistant\n")
