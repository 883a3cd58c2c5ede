"""Many requests at once: slots, the bounded queue and its 503, disconnects, keep-alive, /homellm/ps and /metrics."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from conftest import HOMELLM, ServerProcess
from prometheus_client.parser import text_string_to_metric_families

COUNTING = "1, 2, 3, 4, 5,"
# Without a repeat penalty the built-in model counts on for as long as it is let: a slot that stays busy.
LONG = {"prompt": COUNTING, "temperature": 0, "repeat_penalty": 1.0}
OTHER_CLIENT = "127.0.0.2"
WORDS = ("apple river mountain violin garden rocket pencil ocean "
         "tiger lemon castle silver window thunder marble anchor").split()


@pytest.fixture(scope="module")
def wide_server(tmp_path_factory: pytest.TempPathFactory):
    proc = ServerProcess(["--parallel", "8", "--ctx", "2048"], tmp_path_factory.mktemp("wide")).wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def narrow_server(tmp_path_factory: pytest.TempPathFactory):
    """One slot and room for one waiting request: the third request at once is refused."""
    proc = ServerProcess(["--parallel", "1", "--queue", "1", "--ctx", "2048"],
                         tmp_path_factory.mktemp("narrow")).wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory):
    """One slot and two places in the queue, shared by clients at two loopback addresses."""
    proc = ServerProcess(["--parallel", "1", "--queue", "2", "--ctx", "2048"],
                         tmp_path_factory.mktemp("shared")).wait_ready()
    yield proc
    proc.stop()


def stream_word(client: openai.OpenAI, word: str) -> tuple[str, str | None, int]:
    stream = client.chat.completions.create(
        model="smollm2:135m", messages=[{"role": "user", "content": f"Say the word {word}."}],
        max_tokens=64, temperature=0, stream=True, stream_options={"include_usage": True})
    text, reason, tokens = "", None, 0
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            reason = chunk.choices[0].finish_reason or reason
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return text, reason, tokens


def test_sixteen_concurrent_streams_all_finish_with_their_own_answers(wide_server: ServerProcess):
    client = wide_server.client(timeout=120)
    with concurrent.futures.ThreadPoolExecutor(len(WORDS)) as pool:
        answers = list(pool.map(lambda word: stream_word(client, word), WORDS))
    for word, (text, reason, tokens) in zip(WORDS, answers):
        assert reason in ("stop", "length"), (word, text)
        assert tokens >= 1
        assert word in text.lower(), (word, text)


def test_second_turn_reports_its_cached_prompt_tokens(wide_server: ServerProcess):
    client = wide_server.client()
    turn = [{"role": "user", "content": "Here is a story. " + "The fox ran over the hill. " * 40 + "Who ran?"}]
    # Sampled: a greedy request reuses only whole aligned chunks (tests/scheduler/test_decode_loop.py).
    first = client.chat.completions.create(model="smollm2:135m", messages=turn, max_tokens=16, temperature=0.7,
                                           seed=1)
    follow_up = [*turn, {"role": "assistant", "content": first.choices[0].message.content},
                 {"role": "user", "content": "Where did it run?"}]
    second = client.chat.completions.create(model="smollm2:135m", messages=follow_up, max_tokens=16,
                                            temperature=0.7, seed=1)
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= first.usage.prompt_tokens
    assert second.usage.prompt_tokens - cached <= 40


def metric_samples(server: ServerProcess) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"{server.base_url}/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_parse_and_their_counters_move(wide_server: ServerProcess):
    model = (("model", "smollm2:135m"),)
    before = metric_samples(wide_server)
    wide_server.client().completions.create(model="smollm2:135m", prompt=COUNTING, max_tokens=8, temperature=0)
    after = metric_samples(wide_server)
    assert after[("homellm_generated_tokens_total", model)] - before.get(("homellm_generated_tokens_total", model), 0) == 8
    done = (("finish_reason", "length"), ("model", "smollm2:135m"))
    assert after[("homellm_requests_total", done)] == before.get(("homellm_requests_total", done), 0) + 1
    assert after[("homellm_time_to_first_token_seconds_count", model)] > before.get(
        ("homellm_time_to_first_token_seconds_count", model), 0)
    assert after[("homellm_slots", model)] == 8
    assert after[("homellm_loaded_models", ())] == 1


def test_ps_shows_the_loaded_model_as_json_and_table(wide_server: ServerProcess):
    body = httpx.get(f"{wide_server.base_url}/homellm/ps").json()
    [model] = body["models"]
    assert (model["name"], model["state"], model["slots"], model["context"]) == ("smollm2:135m", "ready", 8, 2048)
    assert model["memory_bytes"] > 100_000_000 and model["expires_at"] is None
    run = subprocess.run([HOMELLM, "ps", "--port", str(wide_server.port), "--json"], capture_output=True, text=True)
    assert run.returncode == 0 and json.loads(run.stdout)["models"] == [model]
    table = subprocess.run([HOMELLM, "ps", "--port", str(wide_server.port)], capture_output=True, text=True)
    assert "smollm2:135m" in table.stdout and "0/8" in table.stdout and "never" in table.stdout


def test_ps_without_a_server_is_a_one_line_error():
    from conftest import free_port

    run = subprocess.run([HOMELLM, "ps", "--port", str(free_port())], capture_output=True, text=True)
    assert run.returncode == 1
    assert "no homellm server answers" in run.stderr and "Traceback" not in run.stderr


def test_disconnect_mid_stream_frees_the_slot_for_the_next_request(narrow_server: ServerProcess):
    body = {**LONG, "max_tokens": 2000, "stream": True}
    with httpx.stream("POST", f"{narrow_server.base_url}/v1/completions", json=body, timeout=60) as response:
        received = 0
        for line in response.iter_lines():
            if line.startswith("data: "):
                received += 1
            if received >= 5:
                break  # leaving the block closes the connection mid-stream
    assert received == 5
    start = time.monotonic()
    done = narrow_server.client().completions.create(model="smollm2:135m", prompt=COUNTING, max_tokens=8,
                                                     temperature=0)
    elapsed = time.monotonic() - start
    assert done.usage.completion_tokens == 8
    # 2000 abandoned tokens would take well over 10 s here; the one slot is free at once.
    assert elapsed < 5, f"next request waited {elapsed:.1f} s"


def test_non_streamed_request_abandoned_by_its_client_is_cancelled(narrow_server: ServerProcess):
    body = {**LONG, "max_tokens": 2000}
    try:
        httpx.post(f"{narrow_server.base_url}/v1/completions", json=body, timeout=1.0)
    except httpx.TimeoutException:
        pass
    start = time.monotonic()
    done = narrow_server.client().completions.create(model="smollm2:135m", prompt=COUNTING, max_tokens=8,
                                                     temperature=0)
    assert done.usage.completion_tokens == 8
    assert time.monotonic() - start < 5


def test_a_full_queue_answers_503_with_retry_after_and_the_stream_goes_on(narrow_server: ServerProcess):
    long = {**LONG, "max_tokens": 150, "stream": True,
            "stream_options": {"include_usage": True}}
    waiting: dict = {}

    def send_waiting() -> None:  # takes the one place in the queue
        waiting["answer"] = narrow_server.client(timeout=60).completions.create(
            model="smollm2:135m", prompt="Name the capital of France.", max_tokens=10, temperature=0)

    thread = threading.Thread(target=send_waiting)
    chunks = []
    with httpx.stream("POST", f"{narrow_server.base_url}/v1/completions", json=long, timeout=60) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            chunks.append(line)
            if len(chunks) == 3:
                thread.start()
                deadline = time.monotonic() + 5
                while httpx.get(f"{narrow_server.base_url}/homellm/ps").json()["models"][0]["queued"] < 1:
                    assert time.monotonic() < deadline, "the second request never queued"
                    time.sleep(0.02)
                refused = httpx.post(f"{narrow_server.base_url}/v1/completions",
                                     json={"prompt": "Hi", "max_tokens": 2}, timeout=10)
    thread.join(timeout=60)
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "server_busy"
    assert chunks[-1] == "data: [DONE]"
    assert '"completion_tokens": 150' in chunks[-2]  # the running stream was never interrupted
    assert waiting["answer"].usage.completion_tokens >= 1


def wait_until_queued(server: ServerProcess, count: int) -> None:
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.base_url}/homellm/ps").json()["models"][0]["queued"] < count:
        assert time.monotonic() < deadline, f"{count} requests never queued"
        time.sleep(0.02)


def test_a_client_with_nothing_waiting_takes_the_place_of_the_busiest_clients_newest(shared_server: ServerProcess):
    # Linux routes all of 127.0.0.0/8 to loopback: the heavy client comes from a second address.
    heavy_http = httpx.Client(transport=httpx.HTTPTransport(local_address=OTHER_CLIENT), timeout=60)
    heavy = shared_server.client(http_client=heavy_http)
    light = shared_server.client(timeout=60)
    outcomes: dict[str, object] = {}

    def ask(name: str, client: openai.OpenAI) -> None:
        try:
            outcomes[name] = client.completions.create(model="smollm2:135m", prompt="Name the capital of France.",
                                                       max_tokens=10, temperature=0)
        except openai.APIStatusError as exc:
            outcomes[name] = exc

    threads = {name: threading.Thread(target=ask, args=(name, client))
               for name, client in (("heavy 1", heavy), ("heavy 2", heavy), ("light", light))}
    chunks = []
    long = {**LONG, "max_tokens": 2000, "stream": True}
    with heavy_http.stream("POST", f"{shared_server.base_url}/v1/completions", json=long) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            chunks.append(line)
            if len(chunks) == 3:  # the one slot is the heavy client's; it fills the queue, then the light one asks
                for count, name in enumerate(threads, start=1):
                    threads[name].start()
                    wait_until_queued(shared_server, min(count, 2))
                threads["heavy 2"].join(timeout=30)
                break  # closing the stream frees the slot for the other two
    assert chunks[-1] != "data: [DONE]"  # the slot was held throughout
    for thread in threads.values():
        thread.join(timeout=60)
    refused = outcomes["heavy 2"]
    assert isinstance(refused, openai.APIStatusError) and refused.status_code == 503, refused
    assert int(refused.response.headers["Retry-After"]) >= 1
    assert refused.body["code"] == "server_busy"
    for name in ("heavy 1", "light"):
        assert not isinstance(outcomes[name], Exception), outcomes[name]
        assert outcomes[name].usage.completion_tokens >= 1  # type: ignore[union-attr]


def test_keep_alive_zero_unloads_the_model_after_its_request(tmp_path: Path):
    proc = ServerProcess(["--ctx", "512"], tmp_path).wait_ready()
    try:
        client = proc.client()
        done = client.completions.create(model="smollm2:135m", prompt="Hi", max_tokens=2,
                                         extra_body={"keep_alive": 0})
        assert done.usage.completion_tokens >= 1
        deadline = time.monotonic() + 10
        while httpx.get(f"{proc.base_url}/homellm/ps").json()["models"]:
            assert time.monotonic() < deadline, "still loaded 10 s after keep_alive 0"
            time.sleep(0.1)
        again = client.completions.create(model="smollm2:135m", prompt="Hi", max_tokens=2)  # loads it again
        assert again.usage.completion_tokens >= 1
        with pytest.raises(openai.BadRequestError) as info:
            client.completions.create(model="smollm2:135m", prompt="Hi", max_tokens=2, extra_body={"keep_alive": "5 min"})
        assert info.value.body["param"] == "keep_alive"
    finally:
        proc.stop()


def test_an_empty_prompt_is_a_400_and_the_server_goes_on(narrow_server: ServerProcess):
    client = narrow_server.client()
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="smollm2:135m", prompt="", max_tokens=2)
    assert info.value.body["param"] == "prompt"
    assert client.completions.create(model="smollm2:135m", prompt="Hi", max_tokens=2).usage.completion_tokens >= 1


def test_with_no_queue_a_request_still_takes_a_free_slot(tmp_path: Path):
    proc = ServerProcess(["--ctx", "512", "--parallel", "2", "--queue", "0"], tmp_path).wait_ready()
    try:
        client = proc.client(timeout=60)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: client.completions.create(
                model="smollm2:135m", prompt=COUNTING, max_tokens=20, temperature=0), range(2)))
        assert [a.usage.completion_tokens for a in answers] == [20, 20]
    finally:
        proc.stop()
