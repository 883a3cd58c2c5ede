from homellm.engine.stops import StopScanner


def feed_all(scanner: StopScanner, pieces: list[str]) -> str:
    out = "".join(scanner.feed(p) for p in pieces if not scanner.stopped)
    return out if scanner.stopped else out + scanner.flush()


def test_text_without_stops_passes_through_unchanged():
    assert feed_all(StopScanner(()), ["a", "b", "c"]) == "abc"


def test_stop_split_across_pieces_is_never_emitted():
    scanner = StopScanner(("END",))
    assert feed_all(scanner, ["hello E", "N", "D more"]) == "hello "
    assert scanner.stopped


def test_partial_stop_prefix_is_released_when_text_diverges():
    scanner = StopScanner(("END",))
    assert scanner.feed("abc EN") == "abc "
    assert scanner.feed("x") == "ENx"
    assert not scanner.stopped


def test_earliest_of_several_stops_wins():
    scanner = StopScanner(("world", "lo"))
    assert feed_all(scanner, ["hello world"]) == "hel"


def test_held_back_prefix_is_flushed_at_end():
    scanner = StopScanner(("\n\n",))
    assert scanner.feed("answer\n") == "answer"
    assert scanner.flush() == "\n"
