"""The server lists the store and loads a stored model when a request names it; clients never name paths."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import openai
import pytest
from conftest import ServerProcess
from ggufs import write_unknown_architecture

from homellm.engine.llama import EngineOptions
from homellm.generation import Finished, SamplingParams
from homellm.models.resolve import resolve_model, stored_model_ref
from homellm.models.store import Store
from homellm.scheduler import LoadPlan, Scheduler

HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def store_server(tmp_path_factory: pytest.TempPathFactory, tiny_dense_path: Path, tiny_moe_path: Path):
    home = tmp_path_factory.mktemp("store-home")
    store = Store(home)
    store.add([tiny_dense_path], "tiny:dense", "test")
    store.add([tiny_moe_path], "tiny:moe", "test")
    store.add([write_unknown_architecture(home / "alien.gguf")], "alien:latest", "test")
    proc = ServerProcess(["--ctx", "512"], home).wait_ready()
    yield proc
    proc.stop()


def test_models_lists_the_served_model_then_the_store(store_server: ServerProcess):
    ids = [m.id for m in store_server.client().models.list()]
    assert ids[0] == "smollm2:135m"
    assert set(ids) == {"smollm2:135m", "tiny:dense", "tiny:moe", "alien:latest"}
    assert store_server.client().models.retrieve("tiny:moe").id == "tiny:moe"


def test_a_request_naming_a_stored_model_loads_it(store_server: ServerProcess):
    client = store_server.client()
    answer = client.chat.completions.create(model="tiny:moe", messages=HELLO, max_tokens=5, temperature=0)
    assert answer.choices[0].finish_reason == "length" and answer.usage.completion_tokens == 5
    short = client.chat.completions.create(model="TINY:Dense", messages=HELLO, max_tokens=2)
    assert short.choices[0].finish_reason in ("length", "stop")


def test_the_default_model_still_answers(store_server: ServerProcess):
    answer = store_server.client().chat.completions.create(
        model="smollm2:135m", messages=[{"role": "user", "content": "Name the capital of France."}],
        max_tokens=20, temperature=0)
    assert "Paris" in answer.choices[0].message.content


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a/b.gguf"])
def test_a_path_as_model_is_a_400(store_server: ServerProcess, name: str):
    with pytest.raises(openai.BadRequestError) as info:
        store_server.client().chat.completions.create(model=name, messages=HELLO, max_tokens=2)
    assert info.value.body["param"] == "model" and info.value.body["code"] == "invalid_model_name"


def test_a_stored_file_path_cannot_be_loaded_by_a_client(store_server: ServerProcess, tiny_dense_path: Path):
    with pytest.raises(openai.BadRequestError):
        store_server.client().completions.create(model=str(tiny_dense_path), prompt="Hi", max_tokens=2)


def test_an_unknown_model_is_a_404(store_server: ServerProcess):
    with pytest.raises(openai.NotFoundError) as info:
        store_server.client().chat.completions.create(model="mistral:7b", messages=HELLO, max_tokens=2)
    assert info.value.body["code"] == "model_not_found"


def test_a_family_without_its_tag_suggests_the_tags(store_server: ServerProcess):
    with pytest.raises(openai.NotFoundError) as info:
        store_server.client().chat.completions.create(model="tiny", messages=HELLO, max_tokens=2)
    assert "tiny:dense, tiny:moe" in info.value.body["message"]


def test_a_stored_model_that_fails_to_load_fails_its_request_only(store_server: ServerProcess):
    client = store_server.client()
    for _ in range(2):  # forgotten after failing, so the second request tries again and fails the same way
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="alien", messages=HELLO, max_tokens=2)
        assert info.value.body["code"] == "model_load_failed"
    assert httpx.get(f"{store_server.base_url}/health").status_code == 200
    assert client.chat.completions.create(model="tiny:dense", messages=HELLO, max_tokens=2).choices


@pytest.fixture
def two_model_store(tmp_path: Path, tiny_dense_path: Path, tiny_moe_path: Path) -> Store:
    store = Store(tmp_path / "home")
    store.add([tiny_dense_path], "tiny:dense", "test")
    store.add([tiny_moe_path], "tiny:moe", "test")
    return store


async def ask(scheduler: Scheduler, model: str) -> str:
    generation = await scheduler.complete(model, "Hello", SamplingParams(max_tokens=2, temperature=0))
    _, finished = await generation.collect()
    assert isinstance(finished, Finished)
    return model


def loaded(scheduler: Scheduler) -> list[str]:
    return sorted(s.name for s in scheduler.statuses())


def test_the_least_recently_used_idle_model_is_unloaded_but_never_the_startup_one(two_model_store: Store):
    scheduler = Scheduler(resolve=lambda name: stored_model_ref(two_model_store, name),
                          options=EngineOptions(n_ctx=256), max_loaded=2)
    scheduler.add(resolve_model(None))
    try:
        asyncio.run(ask(scheduler, "smollm2:135m"))
        asyncio.run(ask(scheduler, "tiny:dense"))
        assert loaded(scheduler) == ["smollm2:135m", "tiny:dense"]
        asyncio.run(ask(scheduler, "tiny:moe"))
        assert loaded(scheduler) == ["smollm2:135m", "tiny:moe"]
        asyncio.run(ask(scheduler, "tiny:dense"))  # loaded again on demand
        assert loaded(scheduler) == ["smollm2:135m", "tiny:dense"]
    finally:
        scheduler.close()


def test_a_model_being_loaded_for_a_request_is_not_unloaded_by_another(two_model_store: Store):
    scheduler = Scheduler(resolve=lambda name: stored_model_ref(two_model_store, name),
                          options=EngineOptions(n_ctx=256), max_loaded=1)

    async def both() -> list[str]:
        first = asyncio.create_task(ask(scheduler, "tiny:dense"))
        await asyncio.sleep(0.01)  # the first is loading when the second arrives
        return [await first, await asyncio.wait_for(ask(scheduler, "tiny:moe"), 30)]

    try:
        assert asyncio.run(asyncio.wait_for(both(), 60)) == ["tiny:dense", "tiny:moe"]
    finally:
        scheduler.close()


def test_each_model_loaded_on_demand_gets_its_own_options(two_model_store: Store):
    from homellm.errors import DoesNotFitError

    seen: list[str] = []

    def plan_for(ref) -> LoadPlan:
        seen.append(ref.name)
        if ref.name == "tiny:moe":
            raise DoesNotFitError("tiny:moe does not fit", hint="test")
        return LoadPlan(EngineOptions(n_ctx=128))

    scheduler = Scheduler(resolve=lambda name: stored_model_ref(two_model_store, name), plan_for=plan_for)
    try:
        asyncio.run(ask(scheduler, "tiny:dense"))
        assert [s.n_ctx for s in scheduler.statuses()] == [128]
        with pytest.raises(DoesNotFitError):
            asyncio.run(ask(scheduler, "tiny:moe"))
        assert seen == ["tiny:dense", "tiny:moe"] and loaded(scheduler) == ["tiny:dense"]
    finally:
        scheduler.close()


def test_models_past_the_memory_budget_unload_the_least_recently_used_idle_one(two_model_store: Store):
    sizes = {"tiny:dense": 600, "tiny:moe": 500, "smollm2:135m": 300}
    scheduler = Scheduler(resolve=lambda name: stored_model_ref(two_model_store, name),
                          plan_for=lambda ref: LoadPlan(EngineOptions(n_ctx=128), sizes[ref.name]),
                          memory_budget=1000, max_loaded=10)
    try:
        asyncio.run(ask(scheduler, "tiny:dense"))
        asyncio.run(ask(scheduler, "smollm2:135m"))
        assert loaded(scheduler) == ["smollm2:135m", "tiny:dense"]  # 900 of 1000
        asyncio.run(ask(scheduler, "tiny:moe"))  # 500 more: the older tiny:dense goes
        assert loaded(scheduler) == ["smollm2:135m", "tiny:moe"]
        assert sum(s.memory_bytes for s in scheduler.statuses()) == 800
    finally:
        scheduler.close()


def test_a_model_that_cannot_fit_beside_busy_ones_is_a_503(two_model_store: Store):
    from homellm.errors import ServerBusyError

    scheduler = Scheduler(resolve=lambda name: stored_model_ref(two_model_store, name),
                          plan_for=lambda ref: LoadPlan(EngineOptions(n_ctx=256), 600), memory_budget=1000)

    async def while_busy() -> None:
        long = await scheduler.complete("tiny:dense", "Hello", SamplingParams(max_tokens=200, temperature=0))
        try:
            with pytest.raises(ServerBusyError) as info:
                await scheduler.complete("tiny:moe", "Hello", SamplingParams(max_tokens=2))
            assert info.value.status == 503 and info.value.retry_after > 0
        finally:
            long.cancel()
            await long.collect()

    try:
        asyncio.run(while_busy())
        asyncio.run(ask(scheduler, "tiny:moe"))  # once tiny:dense is idle it makes room
        assert loaded(scheduler) == ["tiny:moe"]
    finally:
        scheduler.close()


def test_two_models_answer_at_the_same_time(store_server: ServerProcess):
    import concurrent.futures

    client = store_server.client(timeout=60)

    def ask_model(model: str) -> tuple[str, int]:
        done = client.completions.create(model=model, prompt="1, 2, 3,", max_tokens=40, temperature=0)
        return done.model, done.usage.completion_tokens

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(ask_model, ["smollm2:135m", "tiny:dense"]))
    assert answers == [("smollm2:135m", 40), ("tiny:dense", 40)]
    loaded_now = {m["name"] for m in httpx.get(f"{store_server.base_url}/homellm/ps").json()["models"]}
    assert {"smollm2:135m", "tiny:dense"} <= loaded_now


async def ask_keep(scheduler: Scheduler, model: str, keep_alive: float | None) -> None:
    generation = await scheduler.complete(model, "Hello", SamplingParams(max_tokens=2, temperature=0), keep_alive)
    await generation.collect()


def test_the_start_model_unloaded_by_keep_alive_comes_back_as_it_was_given(two_model_store: Store):
    import time

    scheduler = Scheduler(resolve=lambda name: stored_model_ref(two_model_store, name),
                          plan_for=lambda ref: LoadPlan(EngineOptions(n_ctx=128)))
    scheduler.add(stored_model_ref(two_model_store, "tiny:dense"), EngineOptions(n_ctx=320), reloadable=True)
    try:
        asyncio.run(ask_keep(scheduler, "tiny:dense", 0))
        deadline = time.monotonic() + 5
        while loaded(scheduler):
            assert time.monotonic() < deadline, "keep_alive 0 did not unload the model"
            time.sleep(0.05)
        asyncio.run(ask_keep(scheduler, "tiny:dense", None))
        [status] = scheduler.statuses()
        assert status.n_ctx == 320 and status.expires_at is None  # its --ctx, and kept loaded again
    finally:
        scheduler.close()


def test_a_model_retired_just_before_a_request_is_loaded_again(two_model_store: Store):
    scheduler = Scheduler(resolve=lambda name: stored_model_ref(two_model_store, name),
                          plan_for=lambda ref: LoadPlan(EngineOptions(n_ctx=128)))
    try:
        asyncio.run(ask(scheduler, "tiny:dense"))
        first = scheduler.runner("tiny:dense")
        assert first.retire()  # what the keep-alive reaper does, caught between its check and the unload
        asyncio.run(ask(scheduler, "tiny:dense"))
        assert scheduler.runner("tiny:dense") is not first and loaded(scheduler) == ["tiny:dense"]
    finally:
        scheduler.close()


def test_a_model_loads_with_no_request_and_unload_lets_it_go(two_model_store: Store):
    import time

    scheduler = Scheduler(resolve=lambda name: stored_model_ref(two_model_store, name),
                          plan_for=lambda ref: LoadPlan(EngineOptions(n_ctx=128)))
    try:
        assert not scheduler.unload("tiny:dense")  # not loaded: nothing to do
        status = asyncio.run(scheduler.load("tiny:dense", keep_alive=3600))
        assert status.state == "ready" and loaded(scheduler) == ["tiny:dense"]
        assert scheduler.unload("tiny:dense")
        deadline = time.monotonic() + 5
        while loaded(scheduler):
            assert time.monotonic() < deadline, "unload did not let the model go"
            time.sleep(0.05)
    finally:
        scheduler.close()


def test_counting_a_conversations_tokens_follows_its_length(two_model_store: Store):
    scheduler = Scheduler(resolve=lambda name: stored_model_ref(two_model_store, name),
                          plan_for=lambda ref: LoadPlan(EngineOptions(n_ctx=128)))
    try:
        short = asyncio.run(scheduler.count_chat_tokens("smollm2:135m", [{"role": "user", "content": "Hi"}]))
        longer = asyncio.run(scheduler.count_chat_tokens(
            "smollm2:135m", [{"role": "user", "content": "Hi there, how are you doing today?"}]))
        assert 0 < short < longer
        assert scheduler.runner("smollm2:135m").idle()  # counting leaves no request behind
    finally:
        scheduler.close()
