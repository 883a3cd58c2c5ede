"""Requests to one model are served in arrival order; a client that leaves frees the model at once."""

import threading
import time

import httpx

COUNTING = "1, 2, 3, 4, 5,"


def test_disconnect_mid_stream_frees_the_model_for_the_next_request(server, client):
    body = {"prompt": COUNTING, "max_tokens": 2000, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{server.base_url}/v1/completions", json=body, timeout=60) as response:
        received = 0
        for line in response.iter_lines():
            if line.startswith("data: "):
                received += 1
            if received >= 5:
                break  # leaving the block closes the connection mid-stream
    assert received == 5
    start = time.monotonic()
    done = client.completions.create(model="smollm2:135m", prompt=COUNTING, max_tokens=8, temperature=0)
    elapsed = time.monotonic() - start
    assert done.usage.completion_tokens == 8
    # 2000 abandoned tokens would take well over 10 s here; the next request is answered at once.
    assert elapsed < 5, f"next request waited {elapsed:.1f} s"


def test_new_request_never_interrupts_a_running_stream(server, client):
    body = {"prompt": COUNTING, "max_tokens": 150, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    second: dict = {}

    def send_second() -> None:
        second["answer"] = client.completions.create(model="smollm2:135m", prompt="Name the capital of France.",
                                                     max_tokens=10, temperature=0)
        second["finished_at"] = time.monotonic()

    thread = threading.Thread(target=send_second)
    chunks = []
    with httpx.stream("POST", f"{server.base_url}/v1/completions", json=body, timeout=60) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            chunks.append(line)
            if len(chunks) == 3:
                thread.start()
    first_finished_at = time.monotonic()
    thread.join(timeout=60)
    assert chunks[-1] == "data: [DONE]"
    assert '"completion_tokens": 150' in chunks[-2]
    assert '"finish_reason": "length"' in chunks[-3]
    assert second["answer"].usage.completion_tokens >= 1
    assert second["finished_at"] > first_finished_at - 0.05  # served after the stream, not inside it


def test_non_streamed_request_abandoned_by_its_client_is_cancelled(server, client):
    body = {"prompt": COUNTING, "max_tokens": 2000, "temperature": 0}
    try:
        httpx.post(f"{server.base_url}/v1/completions", json=body, timeout=1.0)
    except httpx.TimeoutException:
        pass
    start = time.monotonic()
    done = client.completions.create(model="smollm2:135m", prompt=COUNTING, max_tokens=8, temperature=0)
    assert done.usage.completion_tokens == 8
    assert time.monotonic() - start < 5
