"""The first questions a new user asks, with the sampling `homellm chat` and `run` give them."""

from __future__ import annotations

import asyncio

from homellm.cli.chat import terminal_sampling
from homellm.cli.options import DEFAULT_ANSWER_TOKENS, DEFAULT_LOOP_GUARD
from homellm.generation import Finished
from homellm.models.builtin import BUILTIN_NAME
from homellm.scheduler import Scheduler

# At temperature 0 with no repeat penalty, 6 of these ran on to the 1,024-token cap, 4 repeating one line.
FIRST_QUESTIONS = [
    "What is my name?", "Tell me about yourself.", "Write a haiku about rain.", "Say hello in French.",
    "What can you do?", "Give me three tips for sleeping better.", "What is 12 times 7?",
    "Translate 'thank you' into Spanish.", "Who wrote Romeo and Juliet?", "Explain what a CPU does.",
    "What is the boiling point of water?", "Suggest a name for a cat.", "How do I make a cup of tea?",
    "What day comes after Monday?", "Write one sentence about the sea.", "What is Python?", "Tell me a joke.",
    "How are you today?", "What should I cook for dinner?", "Name three colours.", "Why is the sky blue?",
]


def test_first_questions_end_without_looping(scheduler: Scheduler):
    # chat's own sampling at temperature 0: the model's defaults (a repeat penalty), the cap and the loop guard.
    params = terminal_sampling(DEFAULT_ANSWER_TOKENS, 0.0, None, DEFAULT_LOOP_GUARD)

    async def ask_all() -> list[tuple[str, Finished]]:
        async def ask(question: str) -> tuple[str, Finished]:
            generation = await scheduler.chat(BUILTIN_NAME, [{"role": "user", "content": question}], params)
            return await generation.collect()
        return await asyncio.gather(*(ask(q) for q in FIRST_QUESTIONS))

    answers = asyncio.run(ask_all())
    for question, (text, done) in zip(FIRST_QUESTIONS, answers):
        assert text.strip(), question
        assert not done.looped, f"{question!r} looped: {text[-200:]!r}"
    rambling = [q for q, (_, done) in zip(FIRST_QUESTIONS, answers) if done.reason != "stop"]
    assert len(rambling) <= 1, f"these ran on to the cap: {rambling}"
