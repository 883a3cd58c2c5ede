"""Read a user's file into text blocks that remember where they came from (lines or page).

Text, Markdown, reStructuredText, HTML (text only), PDF and source code. Binary
files are skipped with a note, very large files are read up to a cap with a
note, and nothing here follows a path outside the roots it was given.

Every file is untrusted input: whatever its bytes, `load_file` returns a
LoadedFile or raises SkippedFile with the reason, in bounded time and memory.
Text, code, Markdown and HTML are read up to `max_bytes` (8 MiB), and every step
after is linear in them (hence our own HTML reader, see `_html_text`). PDFs are
read by pypdf in a child process held to `PdfLimits`.

This module imports nothing of homellm's: that child process runs this file as a script.
"""

from __future__ import annotations

import html
import json
import queue
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

MAX_FILE_BYTES = 8 * 1024 * 1024  # past this, a file is read up to the cap and a note says so
MAX_PDF_PAGES = 2000
_SNIFF_BYTES = 8192

TEXT_SUFFIXES = {
    ".txt", ".text", ".md", ".markdown", ".rst", ".org", ".adoc", ".csv", ".tsv", ".log", ".tex",
    ".json", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf", ".xml",
}
CODE_SUFFIXES = {
    ".py", ".js", ".ts", ".tsx", ".jsx", ".c", ".h", ".cc", ".cpp", ".hpp", ".rs", ".go", ".java",
    ".kt", ".swift", ".rb", ".php", ".sh", ".bash", ".zsh", ".sql", ".lua", ".r", ".m", ".cs",
    ".scala", ".pl", ".hs", ".ml", ".el", ".vim", ".css", ".scss", ".mk", ".cmake",
}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
PDF_SUFFIXES = {".pdf"}
SPECIAL_NAMES = {"makefile", "dockerfile", "readme", "license", "changelog"}


@dataclass(frozen=True, slots=True)
class Block:
    """A run of text in a file: a heading, a paragraph, a code block or a page's text."""

    text: str
    line_start: int  # 1-based, inclusive; 0 for PDF pages
    line_end: int
    page: int | None = None
    heading: bool = False


@dataclass(frozen=True)
class LoadedFile:
    """What a loader made of one file: its blocks, and a note when something was left out."""

    path: Path
    kind: str  # text, markdown, rst, html, pdf, code
    blocks: list[Block]
    note: str = ""


class SkippedFile(Exception):
    """A file homellm does not index, with the reason shown to the user."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


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


def kind_of(path: Path) -> str | None:
    """The loader for a file by its name, or None for a name we do not index as text."""
    suffix = path.suffix.lower()
    if suffix in (".md", ".markdown"):
        return "markdown"
    if suffix == ".rst":
        return "rst"
    if suffix in HTML_SUFFIXES:
        return "html"
    if suffix in PDF_SUFFIXES:
        return "pdf"
    if suffix in CODE_SUFFIXES:
        return "code"
    if suffix in TEXT_SUFFIXES or path.name.lower() in SPECIAL_NAMES or not suffix:
        return "text"
    return None


def load_file(path: Path, max_bytes: int = MAX_FILE_BYTES, pdf_limits: PdfLimits = PDF_LIMITS) -> LoadedFile:
    """Read one file into blocks; raises SkippedFile for what cannot be indexed, and nothing else.

    At most `max_bytes` of a text file are read, and at most `max_bytes` characters of a PDF's text.
    The worst 8 MiB of text known (millions of one-letter paragraphs or <p> tags) take about 15 s and
    450 MB of blocks and chunks on a slow 2-core machine; a PDF is held to `pdf_limits`.
    """
    kind = kind_of(path)
    if kind is None:
        # An unknown suffix may still be text (notes.txt2, a .nfo); the bytes decide.
        kind = "text"
    if kind == "pdf":
        return _pdf_file(path, MAX_PDF_PAGES, max_bytes, pdf_limits)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            raw = handle.read(max_bytes)
    except OSError as exc:
        raise SkippedFile(path, f"unreadable ({exc.strerror or exc})") from None
    note = f"only the first {max_bytes // (1024 * 1024)} MiB of {size / 2**20:.0f} MiB read" if size > max_bytes else ""
    if _is_binary(raw[:_SNIFF_BYTES]):
        raise SkippedFile(path, "binary file")
    text = decode_text(raw, cut=size > len(raw))
    if kind == "html":
        return LoadedFile(path, kind, _html_blocks(text), note)
    return LoadedFile(path, kind, text_blocks(text, kind), note)


def sniff(path: Path) -> None:
    """Raise SkippedFile for a file that is not text, reading only its start."""
    if kind_of(path) == "pdf":
        return
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as exc:
        raise SkippedFile(path, f"unreadable ({exc.strerror or exc})") from None
    if _is_binary(head):
        raise SkippedFile(path, "binary file")


_CONTROL = bytes(set(range(32)) - {9, 10, 12, 13, 27, 8})


def looks_binary(head: bytes) -> bool:
    """NUL bytes, or many control characters; text in a legacy encoding (Latin-1, cp1252) is still text."""
    if b"\x00" in head:
        return True
    if not head:
        return False
    controls = sum(head.count(c) for c in _CONTROL)
    return controls / len(head) > 0.05


def decode_text(raw: bytes, cut: bool = False) -> str:
    """UTF-8 (a byte-order mark dropped), UTF-16 or UTF-32 (by their byte-order mark, or UTF-16 without
    one), else cp1252, the usual legacy encoding of text files. `cut`: the bytes are the start of a
    longer file, so a character cut at their end is dropped.

    The text never holds NUL characters or lone surrogates (both break what stores or embeds it).
    """
    wide = _wide_encoding(raw[:_SNIFF_BYTES])
    if wide is not None:
        codec, skip = wide
        body = raw[skip:]
        if cut:
            unit = 4 if "32" in codec else 2
            body = body[: len(body) - len(body) % unit]
        return _clean(body.decode(codec, errors="replace"))
    try:
        return _clean(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        # Only the cap cuts a character in two; a cp1252 file may end in a byte that starts one ("café").
        if cut and exc.reason == "unexpected end of data":
            return _clean(raw[:exc.start].decode("utf-8-sig"))
        return _clean(raw.decode("cp1252", errors="replace"))


_BOMS = ((b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"),
         (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))
_SURROGATE = re.compile("[\ud800-\udfff]")


def _wide_encoding(head: bytes) -> tuple[str, int] | None:
    """(codec, length of its byte-order mark) for UTF-32 or UTF-16 text, else None.

    Without a mark, UTF-16 is known by its ASCII: a NUL beside nearly every character, on one side only.
    """
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec, len(bom)
    pairs = len(head) // 2
    if pairs < 4:
        return None
    even, odd = head[0:pairs * 2:2].count(0), head[1:pairs * 2:2].count(0)
    if odd >= 0.6 * pairs and even <= 0.02 * pairs:
        return "utf-16-le", 0
    if even >= 0.6 * pairs and odd <= 0.02 * pairs:
        return "utf-16-be", 0
    return None


def _is_binary(head: bytes) -> bool:
    """looks_binary, on the characters a UTF-16 or UTF-32 head encodes rather than on its bytes."""
    wide = _wide_encoding(head)
    if wide is None:
        return looks_binary(head)
    codec, skip = wide
    return looks_binary(head[skip:].decode(codec, errors="replace").encode("utf-8", errors="replace"))


def _clean(text: str) -> str:
    """Text without NULs (a log padded after a crash, a stray byte past the sniffed start) and without lone
    surrogates (which no UTF-8 store accepts)."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    return _SURROGATE.sub("\ufffd", text)


_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+\S")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+:.])\1{2,}\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def text_blocks(text: str, kind: str = "text") -> list[Block]:
    """Split text at blank lines and headings; fenced code stays one block."""
    # Only \n ends a line, as in editors: splitlines() would also split at form feeds and \u2028.
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    blocks: list[Block] = []
    current: list[str] = []
    start = 1
    in_fence = False

    def flush(end: int, heading: bool = False) -> None:
        nonlocal current
        if not current:
            return
        body = "\n".join(current).strip("\n")
        if body.strip():
            blocks.append(Block(body, start, end, heading=heading))
        current = []

    for number, line in enumerate(lines, start=1):
        if kind == "markdown" and _FENCE.match(line):
            if not in_fence:
                flush(number - 1)
                start = number
            current.append(line)
            in_fence = not in_fence
            if not in_fence:
                flush(number)
                start = number + 1
            continue
        if in_fence:
            current.append(line)
            continue
        if kind == "markdown" and _MD_HEADING.match(line):
            flush(number - 1)
            start = number
            current = [line]
            flush(number, heading=True)
            start = number + 1
            continue
        if kind == "rst" and _RST_UNDERLINE.match(line) and current and len(current[-1].strip()) > 0:
            title = current.pop()
            flush(number - 2)
            start = number - 1
            current = [title]
            flush(number, heading=True)
            start = number + 1
            continue
        if not line.strip():
            flush(number - 1)
            start = number + 1
            continue
        if not current:
            start = number
        current.append(line)
    flush(len(lines))
    return blocks


# ----- HTML -----

_BLOCK_TAGS = {"p", "div", "br", "li", "ul", "ol", "pre", "table", "tr", "section", "article",
               "blockquote", "header", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "title", "dd", "dt"}
_HEADING_TAGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_SKIP_TAGS = {"noscript", "template", "svg"}  # not shown; the head is read for its title
_RAW_TAGS = {"script", "style"}  # code, not markup: what looks like a tag inside them is not one
_RAW_END = {tag: re.compile(rf"</{tag}[\t\n\f\r />]", re.IGNORECASE) for tag in _RAW_TAGS}
# A tag (group 1: "/" for an end tag, group 2: its name), a comment, or <!…>, <?…>, </…> that is not a tag.
_MARKUP = re.compile(r"<(?:(/?)([A-Za-z][^\t\n\f\r />]*)|!--|!\[CDATA\[|[!?/])")
_TAG_STOP = re.compile(r"""=[\t\n\f\r ]*(["'])|>""")  # a quoted attribute value, or the end of the tag
_COMMENT_END = re.compile(r"--!?>")
_LONG_CHARREF = re.compile(r"&#([0-9]{8,});?")
_SPACES = re.compile(r"[ \t\r\f\v]+")


def _html_blocks(text: str) -> list[Block]:
    plain = re.sub(r"\n[ \t]+", "\n", _html_text(text))
    plain = re.sub(r"\n{3,}", "\n\n", plain).strip()
    # Lines of the extracted text, not of the HTML source: the source's lines mean little to a reader.
    return text_blocks(plain, "markdown")


def _html_text(page: str) -> str:
    """The visible text of a page, with blank lines where blocks end; scripts and styles dropped.

    Our own reader rather than html.parser: before Python 3.11.13 and 3.12.11 (CPython gh-135462) that
    one is quadratic in unclosed markup, and took 20 s on 200 KB of "<!--" and 30 s on 200 KB of "<a".
    This one moves forward only: each search starts where the last one ended, and markup left open runs
    to the end of the file, as in a browser (whose tokenizer this follows in its broad lines).
    """
    text = _PageText()
    pos = 0
    while True:
        found = _MARKUP.search(page, pos)
        if found is None:
            text.data(page[pos:])
            break
        text.data(page[pos:found.start()])
        pos = _markup_end(page, found)
        if pos < 0:
            break
        name = (found.group(2) or "").lower()
        if not name:
            continue
        if found.group(1):
            text.end(name)
            continue
        text.start(name)
        if page[pos - 2] == "/":  # <br/>, <svg/>
            text.end(name)
        elif name in _RAW_TAGS:
            close = _RAW_END[name].search(page, pos)
            pos = -1 if close is None else _after(page, ">", close.start())
            if pos < 0:
                break
    return "".join(text.parts)


def _markup_end(page: str, found: re.Match[str]) -> int:
    """Where the markup found ends (the index after it), or -1 when it is never closed."""
    if found.group(2) is not None:
        return _after(page, ">", found.end()) if found.group(1) else _tag_end(page, found.end())
    token = found.group()
    if token == "<!--":
        for empty in (">", "->"):  # <!--> and <!---> are whole comments
            if page.startswith(empty, found.end()):
                return found.end() + len(empty)
        close = _COMMENT_END.search(page, found.end())
        return -1 if close is None else close.end()
    if token == "<![CDATA[":
        return _after(page, "]]>", found.end())
    return _after(page, ">", found.end())  # <!DOCTYPE …>, <?xml …?>: to the first >


def _tag_end(page: str, pos: int) -> int:
    """The index after a start tag's closing >, skipping quoted attribute values, or -1."""
    while True:
        stop = _TAG_STOP.search(page, pos)
        if stop is None:
            return -1
        if stop.group(1) is None:
            return stop.end()
        pos = _after(page, stop.group(1), stop.end())
        if pos < 0:
            return -1


def _after(page: str, token: str, pos: int) -> int:
    found = page.find(token, pos)
    return -1 if found < 0 else found + len(token)


class _PageText:
    """What a page shows: text outside skipped elements, line breaks where blocks begin and end."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self._skip = 0

    def start(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        if self._skip:
            return
        if tag in _BLOCK_TAGS:
            self.parts.append("\n\n" if tag != "br" else "\n")
        if tag in _HEADING_TAGS:
            self.parts.append("# ")

    def end(self, tag: str) -> None:
        if tag in _SKIP_TAGS and self._skip:
            self._skip -= 1
        elif tag in _BLOCK_TAGS and not self._skip:
            self.parts.append("\n\n")

    def data(self, text: str) -> None:
        if text and not self._skip:
            self.parts.append(_SPACES.sub(" ", _unescape(text)))


def _unescape(text: str) -> str:
    """Character references replaced. A decimal one of thousands of digits would make html.unescape
    raise (Python's limit on int() of long strings): past 7 significant digits it is no character."""
    if "&" not in text:
        return text
    return html.unescape(_LONG_CHARREF.sub(_short_charref, text))


def _short_charref(found: re.Match[str]) -> str:
    digits = found.group(1).lstrip("0") or "0"
    return "\ufffd" if len(digits) > 7 else f"&#{digits};"


# ----- PDF -----

def _pdf_file(path: Path, max_pages: int, max_chars: int, limits: PdfLimits) -> LoadedFile:
    reading = _PdfReading(path, max_pages, max_chars, limits)
    reading.run()
    return reading.loaded()


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
                raise SkippedFile(self.path, f"unreadable PDF ({why})")
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

    def loaded(self) -> LoadedFile:
        """The pages read, as blocks, with a note on what was left out."""
        blocks = [Block(block.text, 0, 0, page=number) for number, text in sorted(self.texts.items())
                  for block in text_blocks(text)]
        left = [f"page {number} ({why})" for number, why in sorted(self.left_out.items())]
        if not blocks:
            if left:
                raise SkippedFile(self.path, f"no page of the PDF could be read: {left[0]}")
            if self.total:
                raise SkippedFile(self.path, "PDF without a text layer (scanned pages need OCR)")
        notes = []
        if left:
            notes.append(f"left out: {', '.join(left[:3])}" + (f" and {len(left) - 3} more" if len(left) > 3 else ""))
        if self.stopped:
            notes.append(self.stopped)
        elif self.total is not None and self.total > self.max_pages:
            notes.append(f"only the first {self.max_pages} of {self.total} pages read")
        return LoadedFile(self.path, "pdf", blocks, "; ".join(notes))

    def _child(self) -> str:
        """Run one child from `next_page`: "done", "error:<why>", or why it was stopped."""
        memory = self.limits.memory_bytes + _file_size(self.path)
        command = [sys.executable, "-c", _CHILD_START, __file__, str(self.path), str(self.next_page),
                   str(self.max_pages), str(self.max_chars - self.chars), str(memory)]
        try:
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        except OSError as exc:
            raise SkippedFile(self.path, f"the PDF reader could not start ({exc.strerror or exc})") from None
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
                text = _clean(str(event["text"]))
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


# The child runs this file as a script, with the working directory out of its import path.
_CHILD_START = ("import sys, runpy; sys.path = [p for p in sys.path if p]; "
                "runpy.run_path(sys.argv[1], run_name='__main__')")


def _pdf_child(args: list[str]) -> None:
    """In the child process: the page count, then each page's text, as JSON lines on stdout."""
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
            text = _clean(reader.pages[number - 1].extract_text() or "")
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
    _pdf_child(sys.argv[2:])
