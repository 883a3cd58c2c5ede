"""The fair queue in front of a model's slots: turns between clients, and who gives up a place when full."""

from __future__ import annotations

from collections import Counter

from homellm.generation import SamplingParams
from homellm.scheduler.slots import Request
from homellm.scheduler.waiting import WaitingRequests


def request(client: str, tag: int) -> Request:
    # The queue reads only `client`; the prompt carries a tag to tell requests apart.
    return Request(generation=None, prompt=[tag], params=SamplingParams(), grammar=None, budget=1,  # type: ignore[arg-type]
                   client=client)


def queue_of(*requests: Request) -> WaitingRequests:
    waiting = WaitingRequests()
    for item in requests:
        waiting.push(item)
    return waiting


def tags(waiting: WaitingRequests, running: Counter[str]) -> list[tuple[str, int]]:
    """Everything popped, each pop counted as running for its client."""
    order = []
    while (item := waiting.pop(running)) is not None:
        order.append((item.client, item.prompt[0]))
        running[item.client] += 1
    return order


def test_clients_take_turns_each_in_its_own_order():
    waiting = queue_of(request("a", 1), request("a", 2), request("a", 3), request("b", 1), request("c", 1))
    assert len(waiting) == 5
    assert tags(waiting, Counter()) == [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("a", 3)]
    assert len(waiting) == 0


def test_a_free_slot_goes_to_the_client_with_the_fewest_running():
    waiting = queue_of(request("flood", 1), request("flood", 2), request("quiet", 1))
    assert waiting.pop(Counter(flood=4)).client == "quiet"
    assert waiting.pop(Counter(flood=4)).prompt == [1]


def test_only_a_client_two_behind_the_busiest_takes_a_place():
    waiting = queue_of(request("a", 1), request("a", 2), request("b", 1))
    assert waiting.busiest_above("c") == "a"  # 2 waiting against none
    assert waiting.busiest_above("b") is None  # 2 against 1: a swap would only move the excess
    assert waiting.busiest_above("a") is None  # never its own
    assert WaitingRequests().busiest_above("a") is None


def test_the_busiest_client_gives_up_its_newest_request():
    waiting = queue_of(request("a", 1), request("a", 2), request("b", 1))
    dropped = waiting.drop_newest("a")
    assert (dropped.client, dropped.prompt) == ("a", [2])
    assert (len(waiting), waiting.count("a"), waiting.count("b")) == (2, 1, 1)
    waiting.drop_newest("a")
    assert waiting.count("a") == 0 and waiting.busiest_above("c") is None  # one request: not two behind
    assert [item.client for item in waiting] == ["b"]


def test_drain_empties_the_queue():
    waiting = queue_of(request("a", 1), request("b", 1))
    assert [item.client for item in waiting.drain()] == ["a", "b"]
    assert len(waiting) == 0 and waiting.pop(Counter()) is None
