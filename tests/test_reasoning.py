"""The reasoning splitter: a reasoning model's text deltas into thinking and answer, wherever the deltas cut."""

from __future__ import annotations

import pytest

from homellm.generation import Reasoning
from homellm.reasoning import ReasoningSplitter, Split, split_whole, thinking_style_of

THINK = Reasoning()
INSIDE = Reasoning(starts_inside=True)
HARMONY = thinking_style_of("{{ '<|channel|>analysis<|message|>' }}").reasoning("<|start|>assistant")


def split_in_pieces(reasoning: Reasoning, pieces: list[str]) -> Split:
    splitter = ReasoningSplitter(reasoning)
    thought, answer = [], []
    for piece in pieces:
        part = splitter.feed(piece)
        thought.append(part.reasoning)
        answer.append(part.content)
    last = splitter.finish()
    return Split("".join(thought) + last.reasoning, "".join(answer) + last.content)


def every_two_cuts(text: str) -> list[list[str]]:
    """The text cut at every pair of places (every one-cut split too): tags split anywhere."""
    cuts = []
    for i in range(len(text) + 1):
        for j in range(i, len(text) + 1):
            cuts.append([text[:i], text[i:j], text[j:]])
    return cuts


CASES = [
    # (reasoning, model's text, thinking, answer)
    (THINK, "<think>\nLet me see: 2+2.\n</think>\n\nIt is 4.", "Let me see: 2+2.", "It is 4."),
    (THINK, "  <think>a < b, so </thin is not the end</think>Answer", "a < b, so </thin is not the end", "Answer"),
    (INSIDE, "\nThe user greets me.\n</think>\n\nHello!", "The user greets me.", "Hello!"),
    (THINK, "<think>\n\n</think>\n\nNo thought here.", "", "No thought here."),  # Qwen3 with thinking off
    (THINK, "Just an answer with <think> in it", "", "Just an answer with <think> in it"),
    (THINK, "<thin", "", "<thin"),  # a partial tag that never finished is the answer's text
    (INSIDE, "thinking and never done ", "thinking and never done", ""),  # unclosed: all thinking
    (THINK, "<think>unclosed <", "unclosed <", ""),
    (INSIDE, "a\n\nb </think>", "a\n\nb", ""),
    (HARMONY, "<|channel|>analysis<|message|>User says hi.<|end|><|start|>assistant<|channel|>final<|message|>Hi!",
     "User says hi.", "Hi!"),
]


@pytest.mark.parametrize(("reasoning", "text", "thought", "answer"), CASES)
def test_the_split_is_the_same_wherever_the_deltas_cut_the_text(reasoning: Reasoning, text: str, thought: str,
                                                                  answer: str) -> None:
    assert split_whole(reasoning, text) == Split(thought, answer)
    for pieces in every_two_cuts(text):
        assert split_in_pieces(reasoning, pieces) == Split(thought, answer), pieces


@pytest.mark.parametrize(("reasoning", "text", "thought", "answer"), CASES[:4])
def test_one_character_at_a_time(reasoning: Reasoning, text: str, thought: str, answer: str) -> None:
    assert split_in_pieces(reasoning, list(text)) == Split(thought, answer)


def test_text_without_tags_streams_at_once_as_the_answer() -> None:
    splitter = ReasoningSplitter(THINK)
    assert splitter.feed("Hello") == Split("", "Hello")
    assert splitter.feed(" <think> later is text") == Split("", " <think> later is text")


def test_thinking_streams_as_it_comes_holding_back_only_what_may_be_the_close_tag() -> None:
    splitter = ReasoningSplitter(INSIDE)
    assert splitter.feed("\nFirst") == Split("First", "")
    assert splitter.feed(" step </thi") == Split(" step", "")  # the blank before a possible tag waits
    assert splitter.thinking
    assert splitter.feed("nk>\n\nDone.") == Split("", "Done.")
    assert not splitter.thinking


def test_a_model_that_does_not_think_gets_its_whole_text_as_the_answer() -> None:
    assert split_whole(None, "<think>x</think>y") == Split("", "<think>x</think>y")


@pytest.mark.parametrize(("source", "tags", "switch", "effort"), [
    ("{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>{% endif %}",
     ("<think>", "</think>"), True, False),
    ("{{ '<｜Assistant｜><think>\\n' }}", ("<think>", "</think>"), False, False),
    ("Reasoning: {{ reasoning_effort }} <|channel|>analysis", ("<|channel|>analysis<|message|>",
     "<|end|><|start|>assistant<|channel|>final<|message|>"), False, True),
])
def test_templates_that_think_are_told_by_what_they_mention(source: str, tags: tuple[str, str], switch: bool,
                                                            effort: bool) -> None:
    style = thinking_style_of(source)
    assert style is not None
    assert (style.open_tag, style.close_tag, style.switch, style.effort) == (*tags, switch, effort)


def test_plain_templates_do_not_think() -> None:
    assert thinking_style_of(None) is None
    assert thinking_style_of("{{ '<|im_start|>assistant\\n' }}") is None


def test_a_prompt_ending_in_the_open_tag_starts_the_answer_inside_the_thinking() -> None:
    style = thinking_style_of("<think>")
    assert style is not None
    assert style.reasoning("<|im_start|>assistant\n<think>\n").starts_inside
    assert not style.reasoning("<|im_start|>assistant\n<think>\n\n</think>\n\n").starts_inside
    assert not style.reasoning("<|im_start|>assistant\n").starts_inside


@pytest.mark.parametrize("budget", [0, -1, 2**31, 2**63, True])
def test_a_budget_outside_one_to_int32_is_refused(budget: int) -> None:
    with pytest.raises(ValueError, match="1 to 2,147,483,647"):
        Reasoning(budget=budget)
