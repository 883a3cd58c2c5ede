"""Loaders keep where text came from; chunks follow headings and paragraphs within a token budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from homellm.docs.chunking import chunk_blocks
from homellm.docs.loaders import SkippedFile, load_file, text_blocks
from homellm.docs.search import fts_match


def words(text: str) -> int:
    return len(text.split())


def test_markdown_blocks_keep_their_line_ranges(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text("# Title\n\nFirst paragraph\nstill first.\n\n## Part two\n\n```\ncode\n\nmore code\n```\nafter\n")
    blocks = load_file(path).blocks
    assert [(b.text.splitlines()[0], b.line_start, b.line_end, b.heading) for b in blocks] == [
        ("# Title", 1, 1, True),
        ("First paragraph", 3, 4, False),
        ("## Part two", 6, 6, True),
        ("```", 8, 12, False),  # the fence stays one block, blank line and all
        ("after", 13, 13, False),
    ]


def test_rst_titles_are_headings() -> None:
    blocks = text_blocks("Intro\n=====\n\nBody text here.\n", "rst")
    assert blocks[0].heading and blocks[0].text == "Intro"
    assert (blocks[1].text, blocks[1].line_start) == ("Body text here.", 4)


def test_html_gives_visible_text_only(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text("<html><head><title>T</title><style>p{color:red}</style></head><body>"
                    "<h1>Heading</h1><p>Visible &amp; kept.</p><script>alert('no')</script></body></html>")
    text = "\n".join(b.text for b in load_file(path).blocks)
    assert "Visible & kept." in text and "Heading" in text
    assert "alert" not in text and "color" not in text


def test_binary_and_empty_files(tmp_path: Path) -> None:
    binary = tmp_path / "blob.dat"
    binary.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(SkippedFile, match="binary"):
        load_file(binary)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert load_file(empty).blocks == []


def test_large_file_is_capped_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("line of text\n" * 200_000)  # 2.6 MB
    loaded = load_file(path, max_bytes=1024 * 1024)
    assert "only the first 1 MiB" in loaded.note
    assert loaded.blocks[-1].line_end < 200_000


def test_pdf_pages_are_cited_by_page(tmp_path: Path) -> None:
    path = tmp_path / "doc.pdf"
    path.write_bytes(_two_page_pdf())
    blocks = load_file(path).blocks
    assert [(b.page, b.text) for b in blocks] == [(1, "Alpha page text"), (2, "Beta page text")]


def test_chunks_respect_the_budget_and_repeat_the_heading() -> None:
    paragraphs = "\n\n".join(f"para {i} " + "word " * 30 for i in range(10))
    blocks = text_blocks(f"# Guide\n\n{paragraphs}\n", "markdown")
    chunks = chunk_blocks(blocks, words, max_tokens=80, overlap_tokens=0)
    assert len(chunks) >= 4
    assert all(words(c.text) <= 80 for c in chunks)
    assert all(c.text.startswith("# Guide") for c in chunks)
    body = " ".join(c.text for c in chunks)
    assert all(f"para {i} " in body for i in range(10))
    assert chunks[0].line_start == 3  # the heading is repeated but not counted in the cited lines


def test_a_long_paragraph_is_cut_into_overlapping_windows() -> None:
    lines = "\n".join(f"line{i} " + "x " * 9 for i in range(50))  # 50 lines of 10 words, one block
    chunks = chunk_blocks(text_blocks(lines), words, max_tokens=100, overlap_tokens=20)
    assert len(chunks) > 5
    assert all(words(c.text) <= 100 for c in chunks)
    assert chunks[1].line_start < chunks[0].line_end + 1  # windows overlap
    assert chunks[-1].line_end == 50


def test_a_minified_line_is_cut_by_words_and_characters() -> None:
    line = "a " * 500 + "b" * 5000
    chunks = chunk_blocks(text_blocks(line), lambda t: max(1, len(t) // 4), max_tokens=100)
    assert all(len(c.text) // 4 <= 100 for c in chunks)
    assert "".join(c.text.replace(" ", "") for c in chunks).count("b") >= 5000


@pytest.mark.parametrize("query, match", [
    ('"unclosed', '"unclosed"'),
    ("x AND (b", '"x" OR "b"'),
    ("the and of", '"the" OR "and" OR "of"'),
    ("NEAR(x y)", '"near" OR "x" OR "y"'),
    ("*", None),
    ("-not col:val ^start", '"not" OR "col" OR "val" OR "start"'),
    ("Ünïcödé wörds wörds", '"ünïcödé" OR "wörds"'),
    ("'; DROP TABLE chunks; --", '"drop" OR "table" OR "chunks"'),
])
def test_hostile_text_becomes_quoted_words(query: str, match: str | None) -> None:
    assert fts_match(query) == match


def test_a_huge_query_is_cut_to_its_first_words_quickly() -> None:
    import time

    words = " ".join(f"w{i}" for i in range(200_000))
    start = time.perf_counter()
    match = fts_match(words)
    assert time.perf_counter() - start < 0.5
    assert match is not None and match.count(" OR ") == 63 and match.startswith('"w0" OR "w1"')


def test_line_numbers_count_newlines_only(tmp_path: Path) -> None:
    path = tmp_path / "old.txt"
    path.write_bytes(b"alpha\x0cbeta\r\ngamma\r\n\r\ndelta\n")
    blocks = load_file(path).blocks
    assert [(b.text, b.line_start) for b in blocks] == [("alpha\x0cbeta\ngamma", 1), ("delta", 4)]


def test_legacy_encodings_and_a_byte_order_mark_are_text(tmp_path: Path) -> None:
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e\n".encode("cp1252"))
    assert load_file(latin).blocks[0].text == "Café crème brûlée"
    bom = tmp_path / "bom.md"
    bom.write_bytes("\ufeff# Title\n\nBody\n".encode("utf-8"))
    first = load_file(bom).blocks[0]
    assert first.heading and first.text == "# Title"


def _two_page_pdf() -> bytes:
    """A minimal PDF with one line of text on each of two pages (offsets computed, not hard-coded)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R 5 0 R] /Count 2 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R /Resources << /Font << /F1 7 0 R >> >> >>",
        None,
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 6 0 R /Resources << /Font << /F1 7 0 R >> >> >>",
        None,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for index, text in ((3, b"Alpha page text"), (5, b"Beta page text")):
        stream = b"BT /F1 12 Tf 20 100 Td (" + text + b") Tj ET"
        objects[index] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
