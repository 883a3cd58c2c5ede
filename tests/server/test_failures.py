"""A model whose chat template is broken: 500 in OpenAI's shape, and the server keeps serving."""

import openai
import pytest
from conftest import ServerProcess
from ggufs import copy_with_metadata

FRANCE = [{"role": "user", "content": "Name the capital of France."}]


@pytest.fixture(scope="module")
def broken_server(tmp_path_factory, builtin_path):
    home = tmp_path_factory.mktemp("broken")
    model = copy_with_metadata(builtin_path, home / "broken-template.gguf",
                               {"tokenizer.chat_template": "{{ messages | length // 0 }}"})
    proc = ServerProcess(["--model", str(model)], home).wait_ready()
    yield proc
    proc.stop()


def test_broken_template_is_a_500_with_a_message(broken_server):
    client = broken_server.client()
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="broken-template", messages=FRANCE)
    assert info.value.status_code == 500
    assert info.value.body["code"] == "chat_template_failed"
    assert "ZeroDivisionError" in info.value.body["message"]


def test_server_keeps_serving_after_a_500(broken_server):
    client = broken_server.client()
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="broken-template", messages=FRANCE, stream=True)
    prompt = "<|im_start|>user\nWhat is the capital of Germany?<|im_end|>\n<|im_start|>assistant\n"
    done = client.completions.create(model="broken-template", prompt=prompt, max_tokens=12, temperature=0)
    assert "Berlin" in done.choices[0].text
    assert [m.id for m in client.models.list()] == ["broken-template", "smollm2:135m"]  # served, then stored
