"""Read a PDF's text page by page, in bounded time and memory, for homellm.docs.loaders.

pypdf trusts the file it reads (see `PdfLimits`), so it runs in a child process, pdf_child.py, that is
stopped when a step runs past its time; a page that hangs or kills the child is left out and a new
child goes on from the next one. This module knows pages and text only, not blocks, so that loaders
can import it and not the other way round.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from homellm.docs.pdf_child import clean_text

MAX_PDF_PAGES = 2000


@dataclass(frozen=True)
class PdfLimits:
    """Bounds on reading one PDF. Past one, the page (or the rest of the file) is left out with a note.

    pypdf is pure Python and trusts the file: measured on a slow 2-core machine, a 7 KB PDF whose 20
    pages each repeat one compressed stream of 300,000 text operators took 117 s, and 50 KB that inflate
    to one 50 MB string took 24 s and 660 MB. Recent pypdf caps each stream, but not the work or the
    memory of a page, and older versions (the project allows pypdf>=4) cap less. So pypdf runs in a child
    process that is stopped when a step runs past its time, and whose address space is limited (on
    Linux; macOS ignores the limit and Windows has none: there the times still hold).
    """

    open_seconds: float = 60.0  # read the cross-reference table and count the pages
    page_seconds: float = 20.0  # one page's text (real pages take well under a second)
    total_seconds: float = 300.0  # the whole file, a restart after a stuck page included
    memory_bytes: int = 1 << 30  # the child's address space, besides the size of the file it holds
    stuck_pages: int = 3  # pages that time out or kill the child before the rest of the file is left out


PDF_LIMITS = PdfLimits()


@dataclass(frozen=True)
class PdfPages:
    """The text of the pages read, in page order, with a note on what was left out."""

    pages: list[tuple[int, str]]  # (page number, its text)
    note: str = ""


class UnreadablePdf(Exception):
    """No text could be read from a PDF, with the reason shown to the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_pdf(path: Path, max_pages: int, max_chars: int, limits: PdfLimits = PDF_LIMITS) -> PdfPages:
    """The text of the first `max_pages` pages, at most `max_chars` characters in all, held to `limits`;
    raises UnreadablePdf when no page has any text."""
    reading = _PdfReading(path, max_pages, max_chars, limits)
    reading.run()
    return reading.pages()


class _PdfReading:
    """One PDF read page by page in a child process; a page that hangs or kills the child is left out
    and a new child goes on from the next one."""

    def __init__(self, path: Path, max_pages: int, max_chars: int, limits: PdfLimits) -> None:
        self.path, self.max_pages, self.max_chars, self.limits = path, max_pages, max_chars, limits
        self.total: int | None = None
        self.texts: dict[int, str] = {}
        self.left_out: dict[int, str] = {}  # page number: why
        self.next_page = 1
        self.chars = 0
        self.stuck = 0
        self.stopped = ""  # why the pages from next_page on were not read
        self.deadline = time.monotonic() + limits.total_seconds

    def run(self) -> None:
        """Read every page up to the limits, starting a child again after a page that hung."""
        while True:
            ended = self._child()
            if ended == "done" or self.stopped:
                return
            if self.total is None:
                why = ended.removeprefix("error:") if ended.startswith("error:") else f"{ended} while opening it"
                raise UnreadablePdf(f"unreadable PDF ({why})")
            if ended.startswith("error:"):  # the file opened before: not expected
                self.stopped = f"{ended.removeprefix('error:')}, at page {self.next_page} of {self.total}"
                return
            if self.next_page > self.last_page:  # the child ended after its last page
                return
            self.left_out[self.next_page] = ended
            self.next_page += 1
            self.stuck += 1
            if self.stuck >= self.limits.stuck_pages:
                self.stopped = (f"reading stopped after {self.stuck} pages that could not be read, "
                                f"at page {self.next_page} of {self.total}")
                return
            if self.next_page > self.last_page:
                return

    @property
    def last_page(self) -> int:
        return min(self.total or 0, self.max_pages)

    def pages(self) -> PdfPages:
        """The pages read, with a note on what was left out."""
        pages = sorted(self.texts.items())
        left = [f"page {number} ({why})" for number, why in sorted(self.left_out.items())]
        # Only whitespace makes no block of text in loaders.text_blocks, so no page counts as read.
        if not any(text.strip() for _, text in pages):
            if left:
                raise UnreadablePdf(f"no page of the PDF could be read: {left[0]}")
            if self.total:
                raise UnreadablePdf("PDF without a text layer (scanned pages need OCR)")
        notes = []
        if left:
            notes.append(f"left out: {', '.join(left[:3])}" + (f" and {len(left) - 3} more" if len(left) > 3 else ""))
        if self.stopped:
            notes.append(self.stopped)
        elif self.total is not None and self.total > self.max_pages:
            notes.append(f"only the first {self.max_pages} of {self.total} pages read")
        return PdfPages(pages, "; ".join(notes))

    def _child(self) -> str:
        """Run one child from `next_page`: "done", "error:<why>", or why it was stopped."""
        memory = self.limits.memory_bytes + _file_size(self.path)
        command = [sys.executable, "-c", _CHILD_START, _CHILD_SCRIPT, str(self.path), str(self.next_page),
                   str(self.max_pages), str(self.max_chars - self.chars), str(memory)]
        try:
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        except OSError as exc:
            raise UnreadablePdf(f"the PDF reader could not start ({exc.strerror or exc})") from None
        lines: queue.Queue[bytes | None] = queue.Queue()
        pump = threading.Thread(target=_pump, args=(child.stdout, lines), daemon=True)
        pump.start()
        try:
            return self._follow(lines)
        finally:
            child.kill()
            child.wait()
            pump.join(timeout=5)

    def _follow(self, lines: queue.Queue[bytes | None]) -> str:
        opened = False
        while True:
            step = self.limits.page_seconds if opened else self.limits.open_seconds
            wait = min(step, self.deadline - time.monotonic())
            try:
                line = lines.get(timeout=max(wait, 0))
            except queue.Empty:
                if time.monotonic() >= self.deadline:
                    if self.total is not None:
                        self.stopped = (f"reading stopped after {self.limits.total_seconds:g} s, "
                                        f"at page {self.next_page} of {self.total}")
                    return f"took over {self.limits.total_seconds:g} s"
                return f"took over {step:g} s"
            if line is None:
                return "the reader crashed or ran out of memory"
            try:
                event = json.loads(line)
            except ValueError:
                return "the reader crashed or ran out of memory"
            opened = True
            ended = self._take(event)
            if ended:
                return ended

    def _take(self, event: dict[str, Any]) -> str:
        """Record one event of the child; what ended it, or "" while it goes on."""
        if "pages" in event:
            self.total = int(event["pages"])
        elif "page" in event:
            number = int(event["page"])
            if "error" in event:
                self.left_out[number] = str(event["error"])
            else:
                text = clean_text(str(event["text"]))
                self.texts[number] = text
                self.chars += len(text)
            self.next_page = number + 1
        elif "full" in event:
            self.stopped = (f"only its first {self.max_chars:,} characters of text read "
                            f"(pages 1 to {int(event['full'])} of {self.total})")
            return "full"
        elif "error" in event:
            return f"error:{event['error']}"
        elif "done" in event:
            return "done"
        return ""


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _pump(stream: IO[bytes], lines: queue.Queue[bytes | None]) -> None:
    """The child's lines into the queue, then None at its end (a thread: a pipe has no timeout of its own)."""
    try:
        for line in stream:
            lines.put(line)
    finally:
        stream.close()
        lines.put(None)


# The child runs pdf_child.py as a script, with the working directory out of its import path.
_CHILD_SCRIPT = str(Path(__file__).with_name("pdf_child.py"))
_CHILD_START = ("import sys, runpy; sys.path = [p for p in sys.path if p]; "
                "runpy.run_path(sys.argv[1], run_name='__main__')")
