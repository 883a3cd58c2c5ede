"""Cut a file's blocks into chunks of a token budget that follow its structure.

A chunk gathers whole paragraphs under their heading until the budget is
reached; a heading starts a new chunk and is repeated at the top of the
section's later chunks, so each chunk says what it is about. A paragraph longer
than the budget is cut into overlapping windows of words.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from homellm.docs.loaders import Block

DEFAULT_CHUNK_TOKENS = 200
DEFAULT_OVERLAP_TOKENS = 32

TokenCounter = Callable[[str], int]


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
    parts: list[Block] = []
    used = 0

    def flush() -> None:
        nonlocal parts, used
        body = [block for block in parts if block is not heading]
        if body:
            shown = [heading, *body] if heading is not None else body
            chunks.append(_join(shown))
        parts, used = [], 0

    for block in blocks:
        if block.heading:
            flush()
            heading = block
            parts, used = [block], count_tokens(block.text)
            continue
        if block.page is not None and parts and parts[-1].page != block.page:
            flush()  # a chunk cites one page
            heading = None
        size = count_tokens(block.text)
        if size > max_tokens:
            flush()
            for window in _windows(block, count_tokens, max_tokens, overlap_tokens):
                chunks.append(_join([heading, window] if heading is not None else [window]))
            continue
        if parts and used + size > max_tokens:
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
    """A line too long for one chunk (minified code, a PDF paragraph) cut at spaces, or by characters."""
    pieces: list[tuple[str, int, int]] = []
    current: list[str] = []
    used = 0
    for word in line.split(" "):
        size = count_tokens(word)
        while size > max_tokens:  # one "word" past the budget (a base64 line)
            cut = max(1, len(word) * max_tokens // (2 * size))
            pieces.append((word[:cut], number, count_tokens(word[:cut])))
            word = word[cut:]
            size = count_tokens(word)
        if current and used + size > max_tokens:
            pieces.append((" ".join(current), number, used))
            current, used = [], 0
        current.append(word)
        used += size
    if current:
        pieces.append((" ".join(current), number, used))
    return pieces
