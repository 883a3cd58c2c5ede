"""A model file's recommended sampling is what a request gets for the fields it leaves out."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from homellm.engine.llama import EngineOptions
from homellm.generation import SamplingParams
from homellm.models.resolve import ModelRef
from homellm.scheduler import Scheduler

QUESTION = [{"role": "user", "content": "Write a short poem about the sea."}]


@pytest.fixture(scope="module")
def greedy_scheduler(greedy_model_path: Path) -> Iterator[Scheduler]:
    loaded = Scheduler()
    loaded.add(ModelRef("greedy", greedy_model_path), EngineOptions(n_ctx=512, n_parallel=2)).wait_loaded()
    yield loaded
    loaded.close()


def answers(scheduler: Scheduler, *params: SamplingParams) -> list[str]:
    async def ask(p: SamplingParams) -> str:
        return (await (await scheduler.chat("greedy", QUESTION, p)).collect())[0]

    return [asyncio.run(ask(p)) for p in params]


def test_the_engine_reads_the_files_recommendation(greedy_scheduler):
    engine = greedy_scheduler.runner("greedy").wait_loaded()
    defaults = engine.sampling_defaults
    assert (defaults.temperature, defaults.top_k) == (0.0, 20)
    assert defaults.top_p == 0.9 and "top_p" not in defaults.from_model  # homellm's, where the file names none
    assert defaults.repeat_penalty == 1.0, "a recipe that names no penalty means none"


def test_a_request_without_temperature_gets_the_files_and_an_explicit_one_wins(greedy_scheduler):
    left_out = answers(greedy_scheduler, SamplingParams(max_tokens=24, seed=1), SamplingParams(max_tokens=24, seed=2))
    assert left_out[0] == left_out[1], "the file's temperature 0 picks the same tokens whatever the seed"
    explicit = answers(greedy_scheduler, SamplingParams(max_tokens=24, seed=1, temperature=1.5),
                       SamplingParams(max_tokens=24, seed=2, temperature=1.5))
    assert explicit[0] != explicit[1]
