"""Cut a file's blocks into chunks of a token budget that follow its structure.

A chunk gathers whole paragraphs under their heading until the budget is
reached; a heading starts a new chunk and is repeated at the top of the
section's later chunks, so each chunk says what it is about. A paragraph longer
than the budget is cut into overlapping windows of words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from homellm.docs.loaders import Block

DEFAULT_CHUNK_TOKENS = 200
DEFAULT_OVERLAP_TOKENS = 32

TokenCounter = Callable[[str], int]
_WORDS = re.compile(r"[^ ]* *")  # a word and the spaces after it


@dataclass(frozen=True)
class Chunk:
    """A piece of a file to index, with the lines (or page) it covers."""

    text: str
    line_start: int
    line_end: int
    page: int | None = None


def chunk_blocks(blocks: list[Block], count_tokens: TokenCounter,
                 max_tokens: int = DEFAULT_CHUNK_TOKENS,
                 overlap_tokens: int = DEFAULT_OVERLAP_TOKENS) -> list[Chunk]:
    """Chunks of at most about `max_tokens` tokens, in file order."""
    chunks: list[Chunk] = []
    heading: Block | None = None
    heading_shown = False  # whether a chunk holds the current heading yet
    lone: list[Block] = []  # headings with no text under them (a title, a list of contents), kept together
    lone_used = 0
    parts: list[Block] = []
    used = 0

    def emit(chunk: Chunk) -> None:
        close_lone()
        chunks.append(chunk)

    def close_lone() -> None:
        nonlocal lone, lone_used
        if lone:
            chunks.append(_join(lone))
            lone, lone_used = [], 0

    def flush() -> None:
        nonlocal parts, used, heading_shown, lone_used
        body = [block for block in parts if block is not heading]
        if body:
            shown = [heading, *body] if heading is not None else body
            emit(_join(shown))
            heading_shown = True
        elif heading is not None and not heading_shown:
            # A heading with nothing under it before the next one is still text of the file: it goes
            # into a chunk of such headings, so a search finds it.
            size = count_tokens(heading.text)
            if lone and lone_used + size > max_tokens:
                close_lone()
            lone.append(heading)
            lone_used += size
            heading_shown = True
        parts, used = [], 0

    for block in blocks:
        size = count_tokens(block.text)
        if block.heading and size <= max_tokens // 2:
            flush()
            heading, heading_shown = block, False
            parts, used = [block], size
            continue
        if block.heading:
            # A "heading" of half the budget or more (a whole minified page after a #) is text: repeated at
            # the top of each of its section's chunks, it would fill them and multiply the file's size.
            flush()
            heading = None
            block = replace(block, heading=False)
        if block.page is not None and parts and parts[-1].page != block.page:
            flush()  # a chunk cites one page
            heading = None
        if size > max_tokens:
            if parts and parts != [heading]:
                flush()
            parts, used = [], 0
            for window in _windows(block, count_tokens, max_tokens, overlap_tokens):
                emit(_join([heading, window] if heading is not None else [window]))
            heading_shown = True
            continue
        if parts and parts != [heading] and used + size > max_tokens:
            last = parts[-1]
            flush()
            if heading is not None:
                parts, used = [heading], count_tokens(heading.text)
            # The previous paragraph carries over when it is short, so a thought cut at the border stays whole.
            if last is not heading and count_tokens(last.text) <= overlap_tokens:
                parts.append(last)
                used += count_tokens(last.text)
        if not parts and heading is not None:
            parts, used = [heading], count_tokens(heading.text)
        parts.append(block)
        used += size
    flush()
    close_lone()
    return chunks


def _join(blocks: list[Block]) -> Chunk:
    body = [block for block in blocks if not block.heading] or blocks
    return Chunk(
        text="\n\n".join(block.text for block in blocks),
        line_start=min(block.line_start for block in body),
        line_end=max(block.line_end for block in body),
        page=body[0].page,
    )


def _windows(block: Block, count_tokens: TokenCounter, max_tokens: int, overlap_tokens: int) -> list[Block]:
    """Overlapping windows of a long block, cut at line ends where a line fits, else at words."""
    units: list[tuple[str, int, int]] = []  # (text, line number, tokens)
    for offset, line in enumerate(block.text.split("\n")):
        number = block.line_start + offset
        size = count_tokens(line)
        if size <= max_tokens:
            units.append((line, number, size))
        else:
            units.extend(_word_pieces(line, number, count_tokens, max_tokens))
    windows: list[Block] = []
    start = 0
    while start < len(units):
        end, used = start, 0
        while end < len(units) and (end == start or used + units[end][2] <= max_tokens):
            used += units[end][2]
            end += 1
        piece = units[start:end]
        windows.append(Block("\n".join(text for text, _, _ in piece), piece[0][1], piece[-1][1], page=block.page))
        if end >= len(units):
            break
        back, kept = end, 0
        while back - 1 > start and kept + units[back - 1][2] <= overlap_tokens:
            back -= 1
            kept += units[back][2]
        start = back
    return windows


def _word_pieces(line: str, number: int, count_tokens: TokenCounter,
                 max_tokens: int) -> list[tuple[str, int, int]]:
    """A line too long for one chunk (minified code, a PDF paragraph) cut at spaces, or by characters.

    Each word keeps the spaces after it and is counted with them: a run of 5,000 spaces counted as
    5,000 empty words of no tokens made one chunk of 1,250 tokens where the budget was 48.
    """
    pieces: list[tuple[str, int, int]] = []
    current: list[str] = []
    used = 0
    for word in _WORDS.findall(line):
        if not word:
            continue
        size = count_tokens(word)
        if size > max_tokens:  # one "word" past the budget (a base64 line, a run of spaces)
            if current:  # the words before it come first
                pieces.append(("".join(current), number, used))
                current, used = [], 0
            cut = _cut_word(word, size, count_tokens, max_tokens)
            pieces.extend((text, number, tokens) for text, tokens in cut[:-1])
            word, size = cut[-1]
        if current and used + size > max_tokens:
            pieces.append(("".join(current), number, used))
            current, used = [], 0
        current.append(word)
        used += size
    if current:
        pieces.append(("".join(current), number, used))
    return pieces


def _cut_word(word: str, size: int, count_tokens: TokenCounter, max_tokens: int) -> list[tuple[str, int]]:
    """A word of `size` tokens cut into pieces within the budget, each with its tokens.

    Each piece is counted on its own, never what is left of the word: counting the rest after each cut
    made a 1 MB data: URL in a Markdown file cost thousands of counts of up to a megabyte each.
    """
    step = max(1, len(word) * max_tokens // max(1, 2 * size))  # about half the budget, at the word's own density
    pieces: list[tuple[str, int]] = []
    start = 0
    while start < len(word):
        piece = word[start:start + step]
        tokens = count_tokens(piece)
        while tokens > max_tokens and len(piece) > 1:  # a denser stretch (emoji in base64)
            piece = piece[: len(piece) // 2]
            tokens = count_tokens(piece)
        pieces.append((piece, tokens))
        start += len(piece)
    return pieces
