"""The child process that reads a PDF with pypdf, for homellm.docs.pdf: the page count, then each page's
text, as JSON lines on stdout.

The parent runs this file as a script, so it imports nothing of homellm's (the standard library, and
pypdf once the address space is limited): a hostile file can then hang or exhaust only this process.
"""

from __future__ import annotations

import json
import re
import sys
from typing import IO, Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def main(args: list[str]) -> None:
    """Read pages `first` to `last` of the PDF at `path`, at most `max_chars` of text in all, within
    `memory` bytes of address space."""
    import logging

    path, first, last, max_chars, memory = args[0], int(args[1]), int(args[2]), int(args[3]), int(args[4])
    events = sys.stdout.buffer
    sys.stdout = sys.stderr  # whatever else prints, the events stay the only lines on stdout
    _limit_memory(memory)
    logging.disable(logging.CRITICAL)  # pypdf's warnings about a broken file: nobody reads them here
    try:
        reader = _open_pdf(path)
        total = len(reader.pages)
    except Exception as exc:  # noqa: BLE001 - pypdf raises many kinds on a broken file; each is "unreadable"
        _send(events, {"error": _pdf_reason(exc)})
        return
    _send(events, {"pages": total})
    last = min(total, last)
    for number in range(first, last + 1):
        try:
            text = clean_text(reader.pages[number - 1].extract_text() or "")
        except Exception as exc:  # noqa: BLE001 - one bad page, and the others are still read
            _send(events, {"page": number, "error": _pdf_reason(exc)})
            continue
        text = text[:max_chars]
        max_chars -= len(text)
        _send(events, {"page": number, "text": text})
        if max_chars <= 0 and number < last:
            _send(events, {"full": number})
            return
    _send(events, {"done": True})


def clean_text(text: str) -> str:
    """Text without NULs (a log padded after a crash, a stray byte) and lone surrogates (which no UTF-8
    store accepts). Every loader's text goes through it; it lives here because this file may import
    nothing of homellm's, and the child cleans before the cut, so the budget counts what is kept."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    return _SURROGATE.sub("\ufffd", text)


def _open_pdf(path: str) -> Any:
    from pypdf import PdfReader

    reader = PdfReader(path)
    # pypdf opens a file encrypted with an empty password (copy protection only) by itself.
    if reader.is_encrypted and not reader.decrypt(""):
        raise ValueError("encrypted: it needs a password")
    return reader


def _pdf_reason(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "it needs more memory than the reader is given"
    if isinstance(exc, RecursionError):
        return "its structure is nested too deeply"
    reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return reason[:200]


def _limit_memory(limit: int) -> None:
    try:
        import resource

        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass  # no resource module (Windows) or no RLIMIT_AS (macOS): the time limits still hold


def _send(events: IO[bytes], event: dict[str, Any]) -> None:
    events.write(json.dumps(event, ensure_ascii=False).encode("utf-8", errors="replace") + b"\n")
    events.flush()


if __name__ == "__main__":
    main(sys.argv[2:])
