"""Choosing a slot for a prompt: the longest cached prefix, never the whole prompt, the oldest on a tie."""

from homellm.scheduler.slots import Slot, pick_slot, shared_prefix


def slot(seq: int, cached: list[int], last_used: float = 0.0) -> Slot:
    made = Slot(seq)
    made.cached, made.last_used = cached, last_used
    return made


def test_the_slot_sharing_the_longest_prefix_is_chosen():
    slots = [slot(0, [1, 2, 9]), slot(1, [1, 2, 3, 4]), slot(2, [])]
    chosen, shared = pick_slot(slots, [1, 2, 3, 4, 5, 6])
    assert (chosen.seq, shared) == (1, 4)


def test_a_prompt_wholly_cached_still_decodes_its_last_token():
    chosen, shared = pick_slot([slot(0, [1, 2, 3, 4, 5])], [1, 2, 3])
    assert (chosen.seq, shared) == (0, 2)


def test_without_a_shared_prefix_the_least_recently_used_slot_is_taken():
    slots = [slot(0, [7, 8], last_used=5.0), slot(1, [9], last_used=1.0), slot(2, [6], last_used=3.0)]
    chosen, shared = pick_slot(slots, [1, 2])
    assert (chosen.seq, shared) == (1, 0)


def test_shared_prefix_counts_leading_equal_tokens():
    assert shared_prefix([1, 2, 3], [1, 2, 4, 5]) == 2
    assert shared_prefix([], [1]) == 0
    assert shared_prefix([1, 2], [1, 2]) == 2
