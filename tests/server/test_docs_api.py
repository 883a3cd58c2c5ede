"""Documents and embeddings over HTTP, driven by the official `openai` client and httpx."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from conftest import ServerProcess, generation_timeout

HOMELLM = str(Path(sys.executable).with_name("homellm"))


@pytest.fixture(scope="module")
def collection(docs_home: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A collection made with the CLI, as a user makes one."""
    root = tmp_path_factory.mktemp("handbook")
    (root / "office.md").write_text("# Office\n\nThe office opens at 8 and the coffee machine is on floor 3.\n")
    (root / "leave.md").write_text("# Leave\n\nEvery employee gets 27 days of paid holiday a year.\n")
    env = {**os.environ, "HOMELLM_HOME": str(docs_home)}
    subprocess.run([HOMELLM, "docs", "add", "handbook", str(root)], env=env, check=True, capture_output=True)
    return "handbook"


def test_embeddings_with_the_openai_client(docs_server: ServerProcess) -> None:
    client = docs_server.client()
    one = client.embeddings.create(model="all-minilm:l6-v2", input="The cat sat on the mat.")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 384
    assert one.usage.prompt_tokens > 2 and one.model == "all-minilm:l6-v2"
    many = client.embeddings.create(model="all-minilm", input=["A kitten naps.", "Stocks fell.", "A cat sleeps."],
                                    encoding_format="float")
    vectors = np.array([d.embedding for d in many.data])
    assert [d.index for d in many.data] == [0, 1, 2]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[1]


def test_embeddings_base64_matches_float(docs_server: ServerProcess) -> None:
    body = {"model": "all-minilm:l6-v2", "input": "same text"}
    as_float = httpx.post(f"{docs_server.base_url}/v1/embeddings", json=body).json()
    as_b64 = httpx.post(f"{docs_server.base_url}/v1/embeddings", json={**body, "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(as_b64["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, as_float["data"][0]["embedding"], atol=1e-6)


@pytest.mark.parametrize("body, match", [
    ({"model": "all-minilm:l6-v2", "input": ""}, "empty"),
    ({"model": "all-minilm:l6-v2", "input": []}, "empty list"),
    ({"model": "all-minilm:l6-v2", "input": [1, 2, 3]}, "token arrays"),
    ({"model": "all-minilm:l6-v2", "input": "x", "dimensions": 128}, "384 dimensions"),
    ({"model": "smollm2:135m", "input": "x"}, "not an embedding model"),
])
def test_embedding_errors_are_openai_shaped(docs_server: ServerProcess, body: dict, match: str) -> None:
    response = httpx.post(f"{docs_server.base_url}/v1/embeddings", json=body)
    assert response.status_code == 400
    assert match in response.json()["error"]["message"]


def test_unknown_embedding_model_is_404(docs_server: ServerProcess) -> None:
    with pytest.raises(openai.NotFoundError):
        docs_server.client().embeddings.create(model="nomic-embed:none", input="x")


def test_docs_listed_and_searched(docs_server: ServerProcess, collection: str) -> None:
    listed = httpx.get(f"{docs_server.base_url}/homellm/docs").json()["collections"]
    mine = next(c for c in listed if c["name"] == collection)
    assert mine["files"] == 2 and mine["complete"] is True
    found = httpx.get(f"{docs_server.base_url}/homellm/docs/{collection}/search",
                      params={"q": "how many vacation days", "k": 1}).json()
    hit = found["hits"][0]
    assert Path(hit["path"]).name == "leave.md" and hit["lines"] == [3, 3] and "27 days" in hit["text"]
    assert set(hit) == {"path", "score", "text", "lines", "chunk_id"}
    missing = httpx.get(f"{docs_server.base_url}/homellm/docs/nope/search", params={"q": "x"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "collection_not_found"
    empty = httpx.get(f"{docs_server.base_url}/homellm/docs/{collection}/search", params={"q": "  "})
    assert empty.status_code == 400


def test_chat_with_a_collection_cites_its_sources(docs_server: ServerProcess, collection: str) -> None:
    client = docs_server.client()
    answer = client.chat.completions.create(
        model="smollm2:135m", temperature=0, max_tokens=40,
        messages=[{"role": "user", "content": "How many days of paid holiday do employees get?"}],
        extra_body={"homellm": {"collections": [collection], "k": 2}})
    content = answer.choices[0].message.content
    assert "\n\nSources:\n[1] " in content and "leave.md:3" in content
    citations = answer.model_extra["homellm"]["citations"]
    assert citations[0]["index"] == 1 and Path(citations[0]["path"]).name == "leave.md"
    # The prompt really held the documents: more prompt tokens than the question alone.
    plain = client.chat.completions.create(
        model="smollm2:135m", temperature=0, max_tokens=1,
        messages=[{"role": "user", "content": "How many days of paid holiday do employees get?"}])
    assert answer.usage.prompt_tokens > plain.usage.prompt_tokens + 20


def test_streamed_chat_with_a_collection_ends_with_sources(docs_server: ServerProcess, collection: str) -> None:
    stream = docs_server.client().chat.completions.create(
        model="smollm2:135m", temperature=0, max_tokens=20, stream=True,
        messages=[{"role": "user", "content": "When does the office open?"}],
        extra_body={"homellm": {"collections": [collection]}})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Sources:\n[1] " in text and "office.md" in text
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert final and final[-1].model_extra["homellm"]["citations"]


def test_a_json_answer_from_a_collection_stays_json(docs_server: ServerProcess, collection: str) -> None:
    answer = docs_server.client().chat.completions.create(
        model="smollm2:135m", temperature=0, max_tokens=60, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "When does the office open? Answer in JSON."}],
        extra_body={"homellm": {"collections": [collection]}})
    if answer.choices[0].finish_reason == "stop":
        json.loads(answer.choices[0].message.content)
    assert "Sources:" not in answer.choices[0].message.content
    assert answer.model_extra["homellm"]["citations"]


def test_chat_naming_an_unknown_collection_is_404(docs_server: ServerProcess) -> None:
    response = httpx.post(f"{docs_server.base_url}/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "hi"}], "homellm": {"collections": ["nope"]}})
    assert response.status_code == 404 and "nope" in response.json()["error"]["message"]
    bad = httpx.post(f"{docs_server.base_url}/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "hi"}], "homellm": {"colections": ["typo"]}})
    assert bad.status_code == 400


def test_cli_search_json_and_ask_with_citations(docs_home: Path, collection: str) -> None:
    env = {**os.environ, "HOMELLM_HOME": str(docs_home)}
    found = subprocess.run([HOMELLM, "docs", "search", collection, "coffee machine floor", "--json", "--k", "1"],
                           env=env, capture_output=True, text=True, check=True,
                           timeout=generation_timeout(0))
    hits = json.loads(found.stdout)
    assert Path(hits[0]["path"]).name == "office.md" and hits[0]["lines"] == [3, 3]
    asked = subprocess.run([HOMELLM, "ask", "--docs", collection, "--temperature", "0", "--max-tokens", "30",
                            "Where is the coffee machine?"], env=env, capture_output=True, text=True,
                           timeout=generation_timeout(30))
    assert asked.returncode == 0, asked.stderr
    assert "Sources:\n[1] " in asked.stdout and "office.md:3" in asked.stdout
    unknown = subprocess.run([HOMELLM, "ask", "--docs", "nope", "hi"], env=env, capture_output=True, text=True)
    assert unknown.returncode == 1 and "no document collection named 'nope'" in unknown.stderr


def test_models_list_tells_embedding_models_apart(docs_server: ServerProcess) -> None:
    cards = {m.id: m.model_extra["homellm"]["kind"] for m in docs_server.client().models.list()}
    assert cards["all-minilm:l6-v2"] == "embedding" and cards["smollm2:135m"] == "chat"
    with pytest.raises(openai.BadRequestError, match="embedding model"):
        docs_server.client().chat.completions.create(model="all-minilm:l6-v2",
                                                     messages=[{"role": "user", "content": "hi"}])
