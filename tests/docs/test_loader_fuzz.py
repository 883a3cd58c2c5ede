"""Fuzzing the document loaders and chunking (issue 23): whatever a file's bytes, `load_file` returns a
LoadedFile or raises SkippedFile (its only documented outcomes) in bounded time, with text any store
accepts, and chunking keeps every character of the blocks it is given. Memory: a PDF's child process is
held to PdfLimits.memory_bytes (tested with a stream that inflates past it), and a long run checks the
worst shapes of a full 8 MiB text file.

Inputs: text in many encodings (UTF-8, UTF-16 and UTF-32 with and without a byte-order mark, Latin-1,
cp1252, Shift-JIS, lone surrogates written as CESU-8) with NULs, invalid bytes, odd line ends and long
lines spliced in, read whole or cut by a small cap; HTML made of hostile fragments (unclosed tags,
comments and CDATA, deep nesting, character references such as &#xD800; and &#99999999;); and PDFs that
pypdf writes here (never downloaded), mutated at their numbers, keywords and bytes. loader_corpus/ keeps
the small files that found a bug or show an outcome, replayed by plain tests.

The default run tries a bounded number of examples with a fixed seed. For a longer run:
    HOMELLM_FUZZ_EXAMPLES=2000 pytest -s tests/docs/test_loader_fuzz.py --hypothesis-show-statistics
which also checks the worst shapes of an 8 MiB file against the stated bounds (too slow for every run).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from homellm.docs import DocsLibrary
from homellm.docs.chunking import chunk_blocks
from homellm.docs.embedding import collection_embedder
from homellm.docs.loaders import (
    Block,
    LoadedFile,
    PdfLimits,
    SkippedFile,
    decode_text,
    load_file,
    sniff,
    text_blocks,
)

if TYPE_CHECKING:
    from homellm.embed.registry import EmbeddingModels

LONG_RUN = int(os.environ.get("HOMELLM_FUZZ_EXAMPLES", "0"))
CORPUS = Path(__file__).parent / "loader_corpus"
# Tight enough that a stuck page shows in a test, loose enough that no real page of these files nears them.
LIMITS = PdfLimits(open_seconds=20, page_seconds=1.0, total_seconds=60, memory_bytes=512 << 20)
# A text file is a linear pass over at most a few MB here (milliseconds): seconds would mean a loop that
# the bounds missed. A PDF may use its whole PdfLimits.total_seconds and a child's start.
SECONDS_PER_TEXT_FILE = 20
SECONDS_PER_PDF = LIMITS.total_seconds + 10
Draw = Callable[..., object]


def examples(default: int, share: float = 1.0) -> int:
    """The default run's budget, or a share of a long run's (a slow test gets fewer)."""
    return max(default, int(LONG_RUN * share))


FUZZ = settings(derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def tokens(text: str) -> int:
    """A token counter of the right shape for chunking: about four characters a token."""
    return (len(text) + 3) // 4


# ----- the property every file is held to -----


def check_outcome(path: Path, max_bytes: int = 8 << 20) -> LoadedFile | SkippedFile:
    """Load the file: only LoadedFile or SkippedFile, in bounded time, with blocks any store accepts;
    then chunk it, losing no character."""
    start = time.monotonic()
    try:
        loaded: LoadedFile | SkippedFile = load_file(path, max_bytes=max_bytes, pdf_limits=LIMITS)
    except SkippedFile as skipped:
        loaded = skipped
    seconds = time.monotonic() - start
    pdf = path.suffix.lower() == ".pdf"
    assert seconds < (SECONDS_PER_PDF if pdf else SECONDS_PER_TEXT_FILE), f"{path.name} took {seconds:.1f} s"
    if isinstance(loaded, SkippedFile):
        assert loaded.reason and "\n" not in loaded.reason and loaded.path == path
        count(f"skipped: {re.sub(r'[(:].*', '', loaded.reason).strip()}")
        return loaded
    for block in loaded.blocks:
        assert block.text.strip() and "\x00" not in block.text
        block.text.encode("utf-8")  # no lone surrogate: SQLite and the tokenizer take UTF-8
        if pdf:
            assert block.page is not None and block.page >= 1
        else:
            assert 1 <= block.line_start <= block.line_end and block.page is None
    check_chunks(loaded.blocks, max_tokens=48, overlap_tokens=8)
    count(f"loaded {loaded.kind}" + (" with a note" if loaded.note else ""))
    return loaded


def count(outcome: str) -> None:
    """An outcome for --hypothesis-show-statistics (the corpus tests run outside hypothesis)."""
    if currently_in_test_context():
        event(outcome)


def check_chunks(blocks: list[Block], max_tokens: int, overlap_tokens: int) -> None:
    chunks = chunk_blocks(blocks, tokens, max_tokens, overlap_tokens)
    kept = Counter("".join(c.text for c in chunks))
    had = Counter("".join(b.text for b in blocks))
    lost = {char: n for char, n in had.items() if not char.isspace() and kept[char] < n}
    assert not lost, f"chunking lost {lost}"
    for chunk in chunks:
        # A heading (at most half the budget) over a full window, and a short paragraph carried over.
        assert tokens(chunk.text) <= 2 * max_tokens + overlap_tokens + 4
        assert chunk.line_start <= chunk.line_end


# ----- text in many encodings -----

ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252",
             "shift_jis", "surrogates")
SUFFIXES = (".txt", ".md", ".rst", ".py", ".html", ".nfo", "")
SPLICES = (b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\xff\xfe", b"\r", b"\r\n", b"\x0c",
           "\u2028".encode(), b"\n\n", b"```\n", b"# ", b"=====\n", b"x" * 20_000, b" " * 5000, b"\x1b[31m")


def encode(text: str, encoding: str) -> bytes:
    if encoding == "surrogates":  # lone surrogates written out, as a broken converter does (CESU-8)
        return text.encode("utf-8", errors="surrogatepass")
    return text.encode(encoding, errors="replace")


@st.composite
def text_files(draw: Draw) -> tuple[bytes, str, int]:
    """Bytes of a text file, its suffix, and the cap to read it with."""
    text = draw(st.text(max_size=300), label="text")
    data = bytearray(encode(text, draw(st.sampled_from(ENCODINGS), label="encoding")))
    for _ in range(draw(st.integers(0, 4), label="splices")):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.sampled_from(SPLICES) | st.binary(max_size=8))
    if draw(st.booleans()):
        data = bytearray(draw(st.binary(max_size=400), label="any bytes"))
    cap = draw(st.sampled_from([8 << 20, 1, 2, 3, 5, 64, 1000]), label="cap")
    return bytes(data), draw(st.sampled_from(SUFFIXES), label="suffix"), cap


@settings(FUZZ, max_examples=examples(120))
@given(case=text_files())
def test_any_text_file_is_loaded_or_skipped(case: tuple[bytes, str, int], scratch: Path) -> None:
    data, suffix, cap = case
    path = scratch / f"file{suffix}"
    path.write_bytes(data)
    outcome = check_outcome(path, max_bytes=cap)
    try:
        sniff(path)
    except SkippedFile:
        # The library sniffs the first 8 KB before it loads: both must agree where the cap reads as much.
        assert isinstance(outcome, SkippedFile) or cap < 8192


# ----- HTML made of hostile fragments -----

HTML_FRAGMENTS = (
    "<p>", "</p>", "<div>", "</div>", "<br>", "<br/>", "<h1>", "</h1>", "<title>", "</title>", "<script>",
    "</script>", "<style>", "</style >", "<svg/>", "<svg>", "</svg>", "<template>", "<noscript>", "<!--", "-->",
    "--!>", "<!-->", "<![CDATA[", "]]>", "<?xml ", "?>", "<!DOCTYPE html>", "<", ">", "</", "</>", "<a", "<a ",
    " href='", ' title="', '"', "'", "=", '<a b="x>y">', "&", "&amp;", "&amp", "&#xD800;", "&#99999999;",
    "&#" + "9" * 5000 + ";", "&#" + "0" * 5000 + "65;", "&#0000065;", "&#x110000;", "&#x" + "f" * 5000,
    "&nbsp", "&#", "&#x", "&#0;", "\x00", "\r\n", "\n\n", "Ünïcödé", "\ud800", "text",
)


@st.composite
def html_pages(draw: Draw) -> bytes:
    depth = draw(st.sampled_from([0, 0, 1, 100, 5000]), label="nesting")
    parts = draw(st.lists(st.sampled_from(HTML_FRAGMENTS) | st.text(max_size=12), max_size=60), label="parts")
    repeat = draw(st.sampled_from([1, 1, 1, 500]), label="repeat")
    page = "<div>" * depth + "".join(parts) * repeat
    return encode(page, draw(st.sampled_from(("utf-8", "utf-16", "cp1252", "surrogates")), label="encoding"))


@settings(FUZZ, max_examples=examples(120))
@given(data=html_pages())
def test_any_html_page_is_loaded_or_skipped(data: bytes, scratch: Path) -> None:
    path = scratch / "page.html"
    path.write_bytes(data)
    check_outcome(path)


# ----- PDFs written by pypdf, then mutated -----


def pdf(contents: list[bytes], *, password: str | None = None, xobject: bool = False, cmap: bool = False) -> bytes:
    """A PDF with one page per content stream, in Helvetica (F1); `xobject`: page 1 also draws a form
    that draws itself; `cmap`: F1 maps its codes to text through a ToUnicode CMap."""
    from pypdf import PdfWriter
    from pypdf.generic import (
        ArrayObject,
        DecodedStreamObject,
        DictionaryObject,
        NameObject,
        NumberObject,
    )

    writer = PdfWriter()
    font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                             NameObject("/BaseFont"): NameObject("/Helvetica")})
    if cmap:
        to_unicode = DecodedStreamObject()
        to_unicode.set_data(b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap 1 begincodespacerange "
                            b"<00> <FF> endcodespacerange 2 beginbfchar <41> <0042> <42> <D83DDE00> endbfchar "
                            b"1 beginbfrange <61> <7A> <0061> endbfrange endcmap CMapName currentdict /CMap "
                            b"defineresource pop end end")
        font[NameObject("/ToUnicode")] = writer._add_object(to_unicode)
    font_ref = writer._add_object(font)
    for number, content in enumerate(contents):
        page = writer.add_blank_page(300, 200)
        resources = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font_ref})})
        stream = DecodedStreamObject()
        stream.set_data(content)
        stream = stream.flate_encode()
        if xobject and number == 0:
            form = DecodedStreamObject()
            form.set_data(b"BT /F1 9 Tf (In the form) Tj ET /X1 Do")
            form.update({NameObject("/Type"): NameObject("/XObject"), NameObject("/Subtype"): NameObject("/Form"),
                         NameObject("/BBox"): ArrayObject([NumberObject(0)] * 2 + [NumberObject(300)] * 2)})
            form_ref = writer._add_object(form)
            form[NameObject("/Resources")] = DictionaryObject({
                NameObject("/Font"): DictionaryObject({NameObject("/F1"): font_ref}),
                NameObject("/XObject"): DictionaryObject({NameObject("/X1"): form_ref})})
            resources[NameObject("/XObject")] = DictionaryObject({NameObject("/X1"): form_ref})
        page[NameObject("/Resources")] = resources
        page[NameObject("/Contents")] = writer._add_object(stream)
    if password is not None:
        writer.encrypt(password, "owner")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def show(text: bytes) -> bytes:
    return b"BT /F1 12 Tf 20 100 Td (" + text + b") Tj ET"


@pytest.fixture(scope="module")
def pdf_seeds() -> dict[str, bytes]:
    return {
        "two pages": pdf([show(b"Alpha page text"), show(b"Beta page text")]),
        "empty password": pdf([show(b"Opened without a password")], password=""),
        "self-drawing form": pdf([show(b"Page with a form") + b" /X1 Do"], xobject=True),
        "ToUnicode CMap": pdf([b"BT /F1 12 Tf 20 100 Td (ABabc) Tj [(x) -200 (yz)] TJ ET"], cmap=True),
    }


HOSTILE_TOKENS = (b"/Count 999999999", b"/Length 99999999999", b"0 0 R", b"9999999 0 R", b"1 0 R", b"[", b"]",
                  b"<<", b">>", b"(", b")", b"stream\n", b"endstream", b"endobj", b"xref\n0 99999999\n",
                  b"/Filter /FlateDecode", b"/Filter [/FlateDecode /LZWDecode /ASCII85Decode]", b"/Kids [2 0 R]",
                  b"/Parent 2 0 R", b"/Type /Pages", b"/Encrypt 1 0 R", b"BT", b"ET", b"Tj", b"TJ", b"Do", b"Tf",
                  b"<FEFFD800>", b"<D800>", b"/ToUnicode", b"%%EOF", b"trailer << /Root 1 0 R >>", b"startxref\n",
                  b"-1", b"1e308", b"\x00", b"\\", b"/Prev 0", b"/W [9 9 9]", b"/Type /XRef", b"/Index [0 -1]")
NUMBERS = (b"0", b"1", b"2", b"-1", b"255", b"65535", b"2147483648", b"4294967296", b"9223372036854775808",
           b"1000000000000", b"9" * 5000)


@st.composite
def pdf_mutants(draw: Draw, seeds: dict[str, bytes]) -> bytes:
    data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)), label="seed")])
    for _ in range(draw(st.integers(1, 4), label="mutations")):
        kind = draw(st.sampled_from(["number", "token", "byte", "cut", "drop", "repeat"]), label="kind")
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "number":
            numbers = [m.span() for m in re.finditer(rb"-?\d+", data)]
            if numbers:
                start, end = draw(st.sampled_from(numbers))
                data[start:end] = draw(st.sampled_from(NUMBERS))
        elif kind == "token":
            data[at:at] = b" " + draw(st.sampled_from(HOSTILE_TOKENS)) + b" "
        elif kind == "byte":
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "drop":
            del data[at:at + draw(st.integers(1, 64))]
        else:
            data[at:at] = data[at:at + draw(st.integers(1, 200))] * draw(st.integers(2, 50))
    return bytes(data)


@settings(FUZZ, max_examples=examples(8, share=0.1))
@given(data=st.data())
def test_any_mutated_pdf_is_loaded_or_skipped(data: st.DataObject, pdf_seeds: dict[str, bytes],
                                              scratch: Path) -> None:
    path = scratch / "mutant.pdf"
    path.write_bytes(data.draw(pdf_mutants(pdf_seeds), label="pdf"))
    check_outcome(path)


def test_the_pdf_seeds_are_read_as_written(pdf_seeds: dict[str, bytes], scratch: Path) -> None:
    texts = {}
    for name, data in pdf_seeds.items():
        path = scratch / "seed.pdf"
        path.write_bytes(data)
        loaded = check_outcome(path)
        assert isinstance(loaded, LoadedFile) and not loaded.note, name
        texts[name] = " ".join(b.text for b in loaded.blocks)
    assert texts["two pages"] == "Alpha page text Beta page text"
    assert texts["empty password"] == "Opened without a password"
    assert "Page with a form" in texts["self-drawing form"] and "In the form" in texts["self-drawing form"]
    assert "B" in texts["ToUnicode CMap"]


# ----- PDFs past a bound -----


def test_stuck_pages_stop_the_file_at_the_stated_count(tmp_path: Path) -> None:
    # 400,000 text operators: seconds of pypdf's time on any machine, in a 3 KB stream. (One such page
    # among others: loader_corpus/pdf-slow-middle-page.pdf.)
    slow = b"BT /F1 12 Tf " + b"(a) Tj " * 400_000 + b"ET"
    path = tmp_path / "slow.pdf"
    path.write_bytes(pdf([show(b"First"), slow, slow, show(b"Fourth")]))
    loaded = load_file(path, pdf_limits=PdfLimits(page_seconds=0.5, stuck_pages=2))
    assert [b.text for b in loaded.blocks] == ["First"]
    assert loaded.note.endswith("reading stopped after 2 pages that could not be read, at page 4 of 4")


@pytest.mark.skipif(sys.platform != "linux", reason="the child's memory is limited where RLIMIT_AS is enforced")
def test_a_stream_that_inflates_past_the_memory_limit_leaves_its_page_out(tmp_path: Path) -> None:
    # 70 KB of PDF that inflate to one 70 MB string (under pypdf's own 75 MB cap).
    bomb = b"BT /F1 12 Tf (" + b"a" * 70_000_000 + b") Tj ET"
    path = tmp_path / "bomb.pdf"
    path.write_bytes(pdf([show(b"First"), bomb]))
    loaded = load_file(path, pdf_limits=PdfLimits(memory_bytes=96 << 20, page_seconds=30))
    assert [b.text for b in loaded.blocks] == ["First"]
    assert loaded.note in ("left out: page 2 (it needs more memory than the reader is given)",
                           "left out: page 2 (the reader crashed or ran out of memory)")


def test_a_pdf_whose_text_runs_past_the_cap_is_cut_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "long.pdf"
    path.write_bytes(pdf([show(b"x" * 600)] * 5))
    loaded = load_file(path, max_bytes=1000, pdf_limits=LIMITS)
    assert sum(len(b.text) for b in loaded.blocks) == 1000 and {b.page for b in loaded.blocks} == {1, 2}
    assert loaded.note == "only its first 1,000 characters of text read (pages 1 to 2 of 5)"


def test_a_pdf_that_cannot_be_opened_in_time_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "doc.pdf"
    path.write_bytes(pdf([show(b"Text")]))
    with pytest.raises(SkippedFile, match=r"unreadable PDF \(took over 0.001 s while opening it\)"):
        load_file(path, pdf_limits=PdfLimits(open_seconds=0.001))


# ----- HTML and chunking stay linear -----


@pytest.mark.parametrize("markup", ["<!--", "<a", "</", "<?", "<!", "<![CDATA[", "<a b='", "<p>", "&#9", "<script>"])
def test_half_a_megabyte_of_unclosed_markup_is_read_in_linear_time(markup: str, tmp_path: Path) -> None:
    # html.parser took 20 s for 200 KB of "<!--" and 30 s for 200 KB of "<a" here (quadratic): half a
    # megabyte would take minutes. Read in one pass, it takes well under a second: a wide margin.
    path = tmp_path / "page.html"
    path.write_bytes(("<p>Kept</p>" + markup * (500_000 // len(markup))).encode())
    start = time.monotonic()
    loaded = load_file(path)
    assert time.monotonic() - start < 5
    assert loaded.blocks[0].text == "Kept"


def test_a_one_megabyte_word_is_cut_with_linear_counting() -> None:
    counted = 0

    def counting(text: str) -> int:
        nonlocal counted
        counted += len(text)
        return tokens(text)

    word = "QUJD" * 250_000  # a data: URL's base64, one 1 MB "word"
    chunks = chunk_blocks(text_blocks(f"# Image\n\n![x](data:image/png;base64,{word})\n", "markdown"), counting)
    assert "".join(c.text.removeprefix("# Image\n\n") for c in chunks).count("QUJD") >= 250_000 - len(chunks)
    assert counted < 6 * len(word)  # it was about len(word)**2 / 800: 1.25e9 characters counted


def test_a_heading_as_long_as_a_file_is_not_repeated_over_its_chunks() -> None:
    heading = "# " + "word " * 200_000
    body = "\n\n".join(f"paragraph {i}" for i in range(2000))
    chunks = chunk_blocks(text_blocks(f"{heading}\n\n{body}\n", "markdown"), tokens)
    assert sum(len(c.text) for c in chunks) < 2 * (len(heading) + len(body))  # it was 2,000 copies: 2 GB


def test_headings_with_no_text_under_them_are_kept_together_in_a_chunk() -> None:
    chunks = chunk_blocks(text_blocks("# Handbook\n\n## Contents\n\n### One\n\nText of one.\n", "markdown"), tokens)
    assert [c.text for c in chunks] == ["# Handbook\n\n## Contents", "### One\n\nText of one."]
    assert [(c.line_start, c.line_end) for c in chunks] == [(1, 3), (7, 7)]
    toc = "\n\n".join(f"## Chapter {i}" for i in range(1000))  # none was chunked before
    chunks = chunk_blocks(text_blocks(toc, "markdown"), tokens, max_tokens=200)
    assert "\n\n".join(c.text for c in chunks) == toc and len(chunks) <= 25  # about 4,000 tokens


# ----- encodings -----


@pytest.mark.parametrize(("data", "cut", "text"), [
    ("caf\u00e9".encode("cp1252"), False, "caf\u00e9"),  # an accent at the very end was dropped
    ("caf\u00e9".encode(), False, "caf\u00e9"),
    ("caf\u00e9".encode()[:-1], True, "caf"),  # a character cut by the cap is dropped
    ("caf\u00e9\n".encode("utf-16"), False, "caf\u00e9\n"),
    ("caf\u00e9\n".encode("utf-16-be"), False, "caf\u00e9\n"),
    ("caf\u00e9\n".encode("utf-32"), False, "caf\u00e9\n"),
    ("caf\u00e9\n".encode("utf-16")[:-1], True, "caf\u00e9"),
    (b"a\x00b", False, "ab"),
    ("\ud800x".encode("utf-8", errors="surrogatepass"), False, "\u00ed\u00a0\u20acx"),  # read as cp1252
])
def test_decoding_keeps_every_character_and_yields_storable_text(data: bytes, cut: bool, text: str) -> None:
    assert decode_text(data, cut=cut) == text


def test_utf16_and_utf32_files_are_text_not_binary(tmp_path: Path) -> None:
    for codec in ("utf-16", "utf-16-le", "utf-16-be", "utf-32"):
        path = tmp_path / f"{codec}.md"
        path.write_bytes("# Titel\n\nGr\u00fc\u00dfe\n".encode(codec))
        sniff(path)
        assert [b.text for b in load_file(path).blocks] == ["# Titel", "Gr\u00fc\u00dfe"], codec
    for data in (bytes(range(256)) * 8, b"\xff\xfe" + b"\x01\x00" * 400, b"\x00\x01" * 400):
        (tmp_path / "blob.txt").write_bytes(data)
        with pytest.raises(SkippedFile, match="binary file"):
            load_file(tmp_path / "blob.txt")


# ----- the corpus -----

# Each file, its outcome, and what it must hold: text of a block, or words of the skip's reason.
CORPUS_OUTCOMES = {
    "cp1252-ends-in-an-accent.txt": ("loaded", "Only the last letter is accented: caf\u00e9"),  # was "caf"
    "headings-only.md": ("loaded", "### Chapter one"),  # no chunk at all before
    "html-charrefs.html": ("loaded", "\ufffd \ufffd \ufffd A\ufffd end"),  # a ValueError before
    "html-unclosed-comments.html": ("loaded", "Before the comments."),
    "html-unclosed-tags.html": ("loaded", "Kept text"),
    "nul-padding-after-the-start.log": ("loaded", "after the padding"),  # NULs in the text before
    "pdf-cyclic-page-tree.pdf": ("skipped", "unreadable PDF (Detected cyclic page references.)"),
    "pdf-needs-a-password.pdf": ("skipped", "unreadable PDF (encrypted: it needs a password)"),
    "pdf-slow-middle-page.pdf": ("loaded", "Third page"),  # 18 s here before, and no bound
    "utf16-with-bom.txt": ("loaded", "Gr\u00fc\u00dfe aus K\u00f6ln"),  # skipped as binary before
    "utf16-without-bom.md": ("loaded", "Text ohne Byte-Order-Mark"),  # skipped as binary before
    "utf32-with-bom.txt": ("loaded", "UTF-32 text \u2603"),  # skipped as binary before
}


def test_the_corpus_is_the_listed_small_files() -> None:
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(CORPUS_OUTCOMES)
    assert all(p.stat().st_size < 10_000 for p in CORPUS.iterdir())


@pytest.mark.parametrize("name", sorted(CORPUS_OUTCOMES))
def test_corpus_file_has_its_outcome(name: str) -> None:
    outcome, holds = CORPUS_OUTCOMES[name]
    result = check_outcome(CORPUS / name)
    if outcome == "skipped":
        assert isinstance(result, SkippedFile) and result.reason == holds
    else:
        assert isinstance(result, LoadedFile) and any(holds in b.text for b in result.blocks)
    if name == "pdf-slow-middle-page.pdf":
        assert isinstance(result, LoadedFile) and result.note == "left out: page 2 (took over 1 s)"


def test_a_collection_of_the_corpus_indexes_every_readable_file_and_says_why_the_others_are_not(
        tmp_path: Path, embedding_models: EmbeddingModels) -> None:
    folder = tmp_path / "hostile"
    folder.mkdir()
    for path in CORPUS.iterdir():
        if path.name != "pdf-slow-middle-page.pdf":  # seconds of pypdf's time under the default limits
            shutil.copy(path, folder / path.name)
    (folder / "mutant.pdf").write_bytes(pdf([show(b"Alpha")])[:-60] + b"\x00" * 60)
    library = DocsLibrary(tmp_path / "home", lambda: collection_embedder(embedding_models))
    report = library.add("hostile", [folder])
    skipped = {Path(path).name: reason for path, reason in report.skipped}
    expected = {name for name, (outcome, _) in CORPUS_OUTCOMES.items() if outcome == "skipped"}
    assert set(skipped) - {"mutant.pdf"} == expected
    assert report.added == len(list(folder.iterdir())) - len(skipped) and library.info("hostile").complete
    assert [Path(h.path).name for h in library.search("hostile", "Grüße aus Köln", k=1, mode="bm25")] == \
        ["utf16-with-bom.txt"]


# ----- the worst shapes of a file: 256 KiB in the default run, the full 8 MiB in long runs -----

SIZE = (8 << 20) if LONG_RUN else (256 << 10)
WORST_SHAPES = {
    "one-letter paragraphs.md": b"a\n\n" * (SIZE // 3),
    "headings.md": b"# a\n" * (SIZE // 4),
    "paragraph tags.html": b"<p>a" * (SIZE // 4),
    "one word.txt": b"x" * SIZE,
}


@pytest.mark.parametrize("name", sorted(WORST_SHAPES))
def test_a_file_of_the_worst_shape_stays_within_the_bounds(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(WORST_SHAPES[name])
    start = time.monotonic()
    tracemalloc.start()
    try:
        chunks = chunk_blocks(load_file(path).blocks, tokens)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    seconds = time.monotonic() - start
    print(f"{name}: {SIZE} bytes, {seconds:.1f} s under tracemalloc, peak {peak / 2**20:.0f} MiB, {len(chunks)} chunks")
    # Memory and time linear in the size: 64 bytes a byte at most, and 300 s for the full 8 MiB.
    assert peak < 64 * SIZE and seconds < 300 * SIZE / (8 << 20) + 10


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("loader-fuzz")
