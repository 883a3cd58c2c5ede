"""Read a user's file into text blocks that remember where they came from (lines or page).

Text, Markdown, reStructuredText, HTML (text only), PDF and source code. Binary
files are skipped with a note, very large files are read up to a cap with a
note, and nothing here follows a path outside the roots it was given.

Every file is untrusted input: whatever its bytes, `load_file` returns a
LoadedFile or raises SkippedFile with the reason, in bounded time and memory.
Text, code, Markdown and HTML are read up to `max_bytes` (8 MiB), and every step
after is linear in them (hence our own HTML reader, see `_html_text`). PDFs are
read by homellm.docs.pdf, with pypdf in a child process held to `PdfLimits`.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

from homellm.docs.pdf import (
    MAX_PDF_PAGES,
    PDF_LIMITS,
    PdfLimits,
    UnreadablePdf,
    read_pdf,
)
from homellm.docs.pdf_child import clean_text

MAX_FILE_BYTES = 8 * 1024 * 1024  # past this, a file is read up to the cap and a note says so
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
        return _pdf_file(path, max_bytes, pdf_limits)
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
        return clean_text(body.decode(codec, errors="replace"))
    try:
        return clean_text(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        # Only the cap cuts a character in two; a cp1252 file may end in a byte that starts one ("café").
        if cut and exc.reason == "unexpected end of data":
            return clean_text(raw[:exc.start].decode("utf-8-sig"))
        return clean_text(raw.decode("cp1252", errors="replace"))


_BOMS = ((b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"),
         (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


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

def _pdf_file(path: Path, max_chars: int, limits: PdfLimits) -> LoadedFile:
    try:
        read = read_pdf(path, MAX_PDF_PAGES, max_chars, limits)
    except UnreadablePdf as exc:
        raise SkippedFile(path, exc.reason) from None
    blocks = [Block(block.text, 0, 0, page=number) for number, text in read.pages
              for block in text_blocks(text)]
    return LoadedFile(path, "pdf", blocks, read.note)
