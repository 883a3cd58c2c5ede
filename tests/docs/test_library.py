"""Collections with the real embedding model and SQLite: add, search, sync, kill midway, hostile input."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from homellm.docs import DocsLibrary
from homellm.docs.embedding import collection_embedder
from homellm.embed.registry import EmbeddingModels
from homellm.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    InvalidRequestError,
)

HOMELLM = str(Path(sys.executable).with_name("homellm"))

CATS = """# Cats

Cats are small domesticated felines. A kitten sleeps most of the day and purrs when content.

## Care

Feed a cat twice a day and keep its litter box clean.
"""
MONEY = "Quarterly earnings rose while the central bank kept interest rates unchanged.\n"
BREAD = """Baking bread
============

Knead the dough for ten minutes, let it rise for an hour, then bake at 220 degrees.
"""


@pytest.fixture
def library(tmp_path: Path, embedding_models: EmbeddingModels) -> DocsLibrary:
    return DocsLibrary(tmp_path / "home", lambda: collection_embedder(embedding_models))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "notes"
    root.mkdir()
    (root / "cats.md").write_text(CATS)
    (root / "money.txt").write_text(MONEY)
    (root / "bread.rst").write_text(BREAD)
    return root


def test_add_then_search_finds_by_meaning_and_by_word(library: DocsLibrary, folder: Path) -> None:
    report = library.add("notes", [folder])
    assert (report.added, report.removed) == (3, 0) and report.chunks >= 3
    dense = library.search("notes", "a young cat napping", k=3, mode="dense")
    assert Path(dense[0].path).name == "cats.md"
    words = library.search("notes", "interest rates", k=3, mode="bm25")
    assert [Path(h.path).name for h in words] == ["money.txt"]
    hybrid = library.search("notes", "how long should dough rise", k=3)
    assert Path(hybrid[0].path).name == "bread.rst"
    assert hybrid[0].line_start >= 4  # cites the paragraph's lines, not the title's
    info = library.info("notes")
    assert (info.files, info.complete, info.roots) == (3, True, [str(folder.resolve())])


def test_sync_reindexes_an_edit_and_drops_a_delete(library: DocsLibrary, folder: Path) -> None:
    library.add("notes", [folder])
    before = library.info("notes").chunks
    (folder / "money.txt").write_text("Volcanic eruptions shape islands and spread ash over villages.\n")
    (folder / "bread.rst").unlink()
    (folder / "new.md").write_text("Saturn has rings made of ice.\n")
    report = library.sync("notes")
    assert (report.added, report.changed, report.removed, report.unchanged) == (1, 1, 1, 1)
    assert library.search("notes", "interest rates", mode="bm25") == []
    assert Path(library.search("notes", "volcano ash", k=1)[0].path).name == "money.txt"
    assert all(Path(h.path).name != "bread.rst" for h in library.search("notes", "bread dough", k=10))
    assert library.info("notes").files == 3
    again = library.sync("notes")
    assert (again.added, again.changed, again.removed, again.unchanged) == (0, 0, 0, 3)
    assert library.info("notes").chunks == before  # bread's one chunk gone, new.md's one chunk in


def test_touch_without_change_is_not_reembedded(library: DocsLibrary, folder: Path) -> None:
    library.add("notes", [folder])
    os.utime(folder / "cats.md", (time.time() + 100, time.time() + 100))
    report = library.sync("notes")
    assert (report.changed, report.unchanged, report.chunks) == (0, 3, 0)


@pytest.mark.parametrize("query", ['"unclosed', "cats AND (", "NEAR(cat kitten)", "*", "-cat", "cat:fish",
                                   "^cats", "OR", "Çàts élevés ünïcödé", "'; DROP TABLE chunks; --", "\\",
                                   "{cats}", "cat*", "a" * 5000])
def test_hostile_queries_are_plain_text(library: DocsLibrary, folder: Path, query: str) -> None:
    library.add("notes", [folder])
    for mode in ("bm25", "dense", "hybrid"):
        hits = library.search("notes", query, k=3, mode=mode)
        assert len(hits) <= 3
    if "cat" in query.lower():  # the words around the operators are still searched
        assert Path(library.search("notes", query, k=1, mode="bm25")[0].path).name == "cats.md"
    assert library.info("notes").chunks >= 3  # nothing was dropped


def test_empty_query_is_a_clear_error(library: DocsLibrary, folder: Path) -> None:
    library.add("notes", [folder])
    for query in ("", "   \n"):
        with pytest.raises(InvalidRequestError, match="empty"):
            library.search("notes", query)


def test_zero_byte_binary_and_outside_link(library: DocsLibrary, folder: Path, tmp_path: Path) -> None:
    (folder / "empty.txt").write_bytes(b"")
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    secret = tmp_path / "secret.txt"
    secret.write_text("The vault code is swordfish.\n")
    (folder / "leak.txt").symlink_to(secret)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "more.txt").write_text("swordfish again\n")
    (folder / "outdir").symlink_to(outside)
    report = library.add("notes", [folder])
    reasons = {Path(path).name: reason for path, reason in report.skipped}
    assert reasons["image.png"] == "binary file"
    assert "outside" in reasons["leak.txt"] and "outside" in reasons["outdir"]
    assert ("empty.txt" in {Path(p).name for p, _ in report.notes})
    assert library.search("notes", "swordfish vault code", k=10, mode="bm25") == []


def test_a_long_document_does_not_fill_the_top_k(library: DocsLibrary, folder: Path) -> None:
    # More matching chunks than the first candidate pool, so the search has to look deeper.
    long = "\n\n".join(f"# Part {i}\n\nCats and kittens purr, cats nap, kittens play, cats." for i in range(150))
    (folder / "long.md").write_text(long)
    library.add("notes", [folder])
    hits = library.search("notes", "cats kittens", k=5, mode="bm25")
    names = [Path(h.path).name for h in hits]
    assert names.count("long.md") == 2 and "cats.md" in names


def test_remove_and_add_again_under_one_library(library: DocsLibrary, folder: Path, tmp_path: Path) -> None:
    library.add("notes", [folder])
    assert Path(library.search("notes", "kitten sleeping", k=1)[0].path).name == "cats.md"
    library.remove("notes")
    other = tmp_path / "other"
    other.mkdir()
    (other / "space.md").write_text("Rockets carry satellites into orbit around the earth.\n")
    library.add("notes", [other])
    hits = library.search("notes", "kitten sleeping", k=3)
    assert [Path(h.path).name for h in hits] == ["space.md"]  # not the old collection's cached vectors


def test_sync_with_a_missing_root_changes_nothing(library: DocsLibrary, folder: Path, tmp_path: Path) -> None:
    library.add("notes", [folder])
    folder.rename(tmp_path / "moved")
    with pytest.raises(InvalidRequestError, match="no longer exists"):
        library.sync("notes")
    assert library.info("notes").files == 3


def test_a_pdf_that_pypdf_cannot_decode_is_skipped(library: DocsLibrary, folder: Path) -> None:
    from test_loaders_and_chunks import _two_page_pdf

    (folder / "odd.pdf").write_bytes(_two_page_pdf().replace(b"<< /Length", b"<< /Filter /FooDecode /Length"))
    report = library.add("notes", [folder])
    reasons = {Path(path).name: reason for path, reason in report.skipped}
    assert "odd.pdf" in reasons and report.added == 3 and library.info("notes").complete


def test_stray_and_damaged_databases_do_not_break_listing(library: DocsLibrary, folder: Path) -> None:
    library.add("notes", [folder])
    (library.root / "not a name.sqlite").write_bytes(b"")
    (library.root / "broken.sqlite").write_bytes(b"this is not sqlite at all" * 100)
    listed = {c.name: c for c in library.list()}
    assert set(listed) == {"notes", "broken"}
    assert listed["notes"].files == 3 and listed["broken"].damaged
    assert library.remove("broken") == "broken"
    assert not (library.root / "broken.sqlite").exists() and library.names() == ["notes"]


def test_collection_errors_change_nothing(library: DocsLibrary, folder: Path, tmp_path: Path) -> None:
    library.add("notes", [folder])
    with pytest.raises(CollectionExistsError):
        library.add("notes", [folder])
    with pytest.raises(CollectionNotFoundError, match="nope"):
        library.search("nope", "cats")
    for bad in ("../escape", "", "a/b", "x" * 65):
        with pytest.raises(InvalidRequestError):
            library.add(bad, [folder])
    with pytest.raises(InvalidRequestError, match="does not exist"):
        library.add("other", [tmp_path / "missing"])
    assert library.names() == ["notes"] and library.info("notes").files == 3
    assert library.remove("notes") == "notes"
    assert library.names() == [] and folder.joinpath("cats.md").read_text() == CATS


def test_glob_limits_the_files(library: DocsLibrary, folder: Path) -> None:
    report = library.add("md", [folder], glob="*.md")
    assert report.added == 1 and library.info("md").glob == "*.md"


def test_killed_add_leaves_a_consistent_collection_that_sync_completes(docs_home: Path, tmp_path: Path) -> None:
    root = tmp_path / "many"
    root.mkdir()
    for i in range(400):  # one chunk each: six transactions of 64 files, and a last one
        (root / f"doc{i:03}.txt").write_text(f"Document {i} talks about topic {i % 17} and little else.\n")
    name = f"killed{os.getpid()}"
    db = docs_home / "docs" / f"{name}.sqlite"
    env = {**os.environ, "HOMELLM_HOME": str(docs_home)}
    proc = subprocess.Popen([HOMELLM, "docs", "add", name, str(root)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    files = 0
    while time.monotonic() < deadline and proc.poll() is None:
        files = _count(db, "files")
        if files > 0:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < files < 400, "the add should be killed midway"
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
        orphans = conn.execute("SELECT count(*) FROM chunks WHERE file_id NOT IN (SELECT id FROM files)").fetchone()
        empty = conn.execute("SELECT count(*) FROM files WHERE id NOT IN (SELECT file_id FROM chunks)").fetchone()
        complete = conn.execute("SELECT value FROM meta WHERE key = 'complete'").fetchone()
    assert orphans == (0,) and empty == (0,) and complete == ("false",)
    listed = subprocess.run([HOMELLM, "docs", "ls"], env=env, capture_output=True, text=True, check=True)
    assert "interrupted" in listed.stdout
    subprocess.run([HOMELLM, "docs", "sync", name], env=env, capture_output=True, check=True)
    with sqlite3.connect(db) as conn:
        paths = conn.execute("SELECT count(*), count(DISTINCT path) FROM files").fetchone()
        per_file = conn.execute("SELECT count(*), count(DISTINCT file_id || '-' || ord) FROM chunks").fetchone()
    assert paths == (400, 400)
    assert per_file[0] == per_file[1]  # no chunk twice
    subprocess.run([HOMELLM, "docs", "rm", name], env=env, capture_output=True, check=True)


def _count(db: Path, table: str) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    except sqlite3.Error:
        return 0
