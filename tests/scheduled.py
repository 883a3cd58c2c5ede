"""Helpers for tests that drive a Scheduler directly: one whole answer, and a model's status."""

from __future__ import annotations

import asyncio

from homellm.generation import Finished, SamplingParams
from homellm.scheduler import Scheduler
from homellm.scheduler.models import ModelStatus


def chat_answer(scheduler: Scheduler, model: str, messages: list[dict], params: SamplingParams) -> tuple[str, Finished]:
    """The whole answer to a chat, and how it finished."""
    async def ask() -> tuple[str, Finished]:
        return await (await scheduler.chat(model, messages, params)).collect()

    return asyncio.run(ask())


def completion(scheduler: Scheduler, model: str, prompt: str, params: SamplingParams) -> tuple[str, Finished]:
    """The whole completion of a raw prompt, and how it finished."""
    async def ask() -> tuple[str, Finished]:
        return await (await scheduler.complete(model, prompt, params)).collect()

    return asyncio.run(ask())


def model_status(scheduler: Scheduler, model: str) -> ModelStatus:
    """The scheduler's status of one loaded model."""
    return next(s for s in scheduler.statuses() if s.name == model)
