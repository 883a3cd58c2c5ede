"""Read a user's file into text blocks that remember where they came from (lines or page).

Text, Markdown, reStructuredText, HTML (text only), PDF and source code. Binary
files are skipped with a note, very large files are read up to a cap with a
note, and nothing here follows a path outside the roots it was given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

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


@dataclass(frozen=True)
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


def load_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> LoadedFile:
    """Read one file into blocks; raises SkippedFile for what cannot be indexed."""
    kind = kind_of(path)
    if kind is None:
        # An unknown suffix may still be text (notes.txt2, a .nfo); the bytes decide.
        kind = "text"
    if kind == "pdf":
        return _pdf_file(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            raw = handle.read(max_bytes)
    except OSError as exc:
        raise SkippedFile(path, f"unreadable ({exc.strerror or exc})") from None
    note = f"only the first {max_bytes // (1024 * 1024)} MiB of {size / 2**20:.0f} MiB read" if size > max_bytes else ""
    if looks_binary(raw[:_SNIFF_BYTES]):
        raise SkippedFile(path, "binary file")
    text = decode_text(raw)
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
    if looks_binary(head):
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


def decode_text(raw: bytes) -> str:
    """UTF-8 (a byte-order mark dropped), else cp1252, the usual legacy encoding of text files."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start >= len(raw) - 4:  # a character cut by the size cap
            return raw[:exc.start].decode("utf-8-sig")
        return raw.decode("cp1252", errors="replace")


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


_BLOCK_TAGS = {"p", "div", "br", "li", "ul", "ol", "pre", "table", "tr", "section", "article",
               "blockquote", "header", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "title", "dd", "dt"}
_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "head"}


class _HTMLText(HTMLParser):
    """The visible text of a page, with line breaks where blocks end; scripts and styles dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS and tag != "head":
            self._skip += 1
        if tag == "title":
            self._title = True
        if tag in _BLOCK_TAGS:
            self.parts.append("\n\n" if tag != "br" else "\n")
        if tag in {"h1", "h2", "h3", "h4", "h5", "h6"}:
            self.parts.append("# ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS and tag != "head" and self._skip:
            self._skip -= 1
        if tag == "title":
            self._title = False
        if tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(re.sub(r"[ \t\r\f\v]+", " ", data))


def _html_blocks(text: str) -> list[Block]:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    plain = re.sub(r"\n[ \t]+", "\n", "".join(parser.parts))
    plain = re.sub(r"\n{3,}", "\n\n", plain).strip()
    # Lines of the extracted text, not of the HTML source: the source's lines mean little to a reader.
    return text_blocks(plain, "markdown")


def _pdf_file(path: Path, max_pages: int = MAX_PDF_PAGES) -> LoadedFile:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(path)
        total = len(reader.pages)
        pages = [(number, reader.pages[number - 1].extract_text() or "")
                 for number in range(1, min(total, max_pages) + 1)]
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise SkippedFile(path, f"unreadable PDF ({exc})") from None
    blocks = [Block(block.text, 0, 0, page=number) for number, text in pages for block in text_blocks(text)]
    if not blocks and total:
        raise SkippedFile(path, "PDF without a text layer (scanned pages need OCR)")
    note = f"only the first {max_pages} of {total} pages read" if total > max_pages else ""
    return LoadedFile(path, "pdf", blocks, note)
