"""Fuzzing the table loader (issue 23): any bytes in a .csv, .tsv, .txt, .json or .jsonl file give a Table
or a TableError with a message and a hint on one line, never another exception, in bounded time.

Inputs: CSV built from hostile parts (empty, duplicate, non-ASCII and SQL-like column names, ragged rows,
quotes that never close, NULs, byte-order marks, \\n, \\r\\n and \\r in one file) in several encodings;
JSON and JSON lines from nested values, cut and spliced; and plain random bytes. test_table_bad_input.py
holds the hand-picked cases; table_corpus/ keeps the small files that found a bug or show an outcome.

The default run tries a bounded number of examples with a fixed seed. For a longer run:
    HOMELLM_FUZZ_EXAMPLES=2000 pytest -s tests/tools/test_table_fuzz.py --hypothesis-show-statistics
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from homellm.tools import table as table_module
from homellm.tools.table import MAX_COLUMNS, Table, TableError

LONG_RUN = int(os.environ.get("HOMELLM_FUZZ_EXAMPLES", "0"))
CORPUS = Path(__file__).parent / "table_corpus"
# DuckDB opens these small files in a tenth of a second: seconds would mean a loop that the bounds missed.
SECONDS_PER_TABLE = 20
Draw = Callable[..., object]

FUZZ = settings(derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def examples(default: int, share: float = 1.0) -> int:
    """The default run's budget, or a share of a long run's."""
    return max(default, int(LONG_RUN * share))


def check_table(path: Path) -> Table | TableError:
    """Open the file as a table: a Table that answers a count and a description, or a TableError in one
    line with a hint; in bounded time."""
    start = time.monotonic()
    try:
        table = Table(path)
    except TableError as refused:
        assert time.monotonic() - start < SECONDS_PER_TABLE
        assert refused.message and refused.hint and "\n" not in refused.one_line()
        count("refused: " + re.sub(r"^\S+ |[:(].*$", "", refused.message).strip())
        return refused
    try:
        assert table.columns and len(table.columns) <= MAX_COLUMNS
        assert table.query({"operation": "count", "column": "*"})["value"] == table.rows
        assert table.describe().startswith(f"Table {table.name}")
        json.dumps(table.query_schema("How many rows are there?"))
    finally:
        table.close()
    assert time.monotonic() - start < SECONDS_PER_TABLE
    count("read")
    return table


def count(outcome: str) -> None:
    if currently_in_test_context():
        event(outcome)


# ----- CSV from hostile parts -----

NAMES = ("", "a", "a", "A", "名前", "Ünïcödé", "\ufeffid", '"', '""', "x\ny", "NULL", "select", " ", "1", "a,b",
         "\ud800", "column0", "rowid", "*")
VALUES = ("", "1", "-2.5", "NA", "N/A", "NaN", "null", "2024-01-01", "1e999", "9" * 40, '"', '"unclosed', "\x1f",
          "Montréal", "北京", "\t", "'", "\\", "TRUE", "0x1F")
# NULs make a file binary when they come in its first 8 KB: one file in six gets one, anywhere.
TEXT = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=6)  # controls make it binary too
NEWLINES = ("\n", "\r\n", "\r")
# UTF-8 most often: the other encodings are mostly refused before DuckDB reads a line.
ENCODINGS = ("utf-8", "utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252",
             "shift_jis")


def field(text: str, draw: Draw) -> str:
    if draw(st.booleans()):
        return '"' + text.replace('"', '""') + '"'
    return text


@st.composite
def csv_files(draw: Draw) -> bytes:
    sep = draw(st.sampled_from([",", "\t", ";", "|"]), label="separator")
    width = draw(st.integers(1, 6), label="width")
    header = [draw(st.sampled_from(NAMES) | TEXT) for _ in range(width)]
    lines = [sep.join(field(name, draw) for name in header)]
    for _ in range(draw(st.integers(0, 8), label="rows")):
        ragged = width + draw(st.sampled_from([0, 0, 0, -1, 1, 5]))
        cells = [draw(st.sampled_from(VALUES) | TEXT) for _ in range(max(ragged, 0))]
        lines.append(sep.join(field(cell, draw) for cell in cells))
    newline = draw(st.sampled_from(NEWLINES), label="newline")
    mixed = draw(st.integers(0, 3), label="mixed") == 0  # in one file in four, each line ends its own way
    text = "".join(line + (draw(st.sampled_from(NEWLINES)) if mixed else newline) for line in lines)
    if draw(st.booleans()):
        text *= draw(st.sampled_from([2, 300]))  # past DuckDB's first look at 2,048 rows in some
    if draw(st.integers(0, 5), label="nul") == 0:
        at = draw(st.integers(0, len(text)))
        text = text[:at] + "\x00" + text[at:]
    encoding = draw(st.sampled_from(ENCODINGS), label="encoding")
    return text.encode(encoding, errors="replace" if encoding != "utf-8" else "surrogatepass")


# ----- JSON from nested values -----

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.sampled_from(["\ud800"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=4),
                                                                 inner, max_size=4),
    max_leaves=20)


JSON_SPLICES = (b"\x00", b"\xff", b",", b"{", b'"', b"\xef\xbb\xbf")


@st.composite
def json_files(draw: Draw) -> bytes:
    if draw(st.booleans()):
        records = draw(st.lists(JSON_VALUES, max_size=6), label="lines")
        text = "\n".join(json.dumps(r, ensure_ascii=draw(st.booleans())) for r in records)
    else:
        text = json.dumps(draw(JSON_VALUES, label="value"), ensure_ascii=draw(st.booleans()))
    depth = draw(st.sampled_from([0, 0, 0, 100, 200, 20_000]), label="nesting")
    text = "[" * depth + text + "]" * depth
    data = bytearray(text.encode("utf-8", errors="surrogatepass"))
    for _ in range(draw(st.integers(0, 2), label="splices")):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.sampled_from(JSON_SPLICES) | st.binary(max_size=4))
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))):]
    return bytes(data)


@settings(FUZZ, max_examples=examples(25))
@given(data=csv_files(), suffix=st.sampled_from([".csv", ".tsv", ".txt"]))
def test_any_csv_is_a_table_or_a_table_error(data: bytes, suffix: str, scratch: Path) -> None:
    path = scratch / f"table{suffix}"
    path.write_bytes(data)
    check_table(path)


@settings(FUZZ, max_examples=examples(20))
@given(data=json_files(), suffix=st.sampled_from([".json", ".jsonl"]))
def test_any_json_is_a_table_or_a_table_error(data: bytes, suffix: str, scratch: Path) -> None:
    path = scratch / f"table{suffix}"
    path.write_bytes(data)
    check_table(path)


@settings(FUZZ, max_examples=examples(15, share=0.5))
@given(data=st.binary(max_size=600), suffix=st.sampled_from([".csv", ".tsv", ".json", ".jsonl"]))
def test_any_bytes_are_a_table_or_a_table_error(data: bytes, suffix: str, scratch: Path) -> None:
    path = scratch / f"bytes{suffix}"
    path.write_bytes(data)
    check_table(path)


# ----- bounds -----


def test_a_header_of_100000_columns_is_refused_before_duckdb_reads_it(tmp_path: Path) -> None:
    # DuckDB took 90 s to sniff and describe it, and the question's query then ran past its 10 s.
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(100_000)) + "\n" + ",".join("1" * 100_000) + "\n")
    start = time.monotonic()
    with pytest.raises(TableError, match=f"has 100000 columns; homellm reads tables of up to {MAX_COLUMNS}"):
        Table(path)
    assert time.monotonic() - start < 5  # a line read in Python, not a second of DuckDB


def test_a_file_that_takes_past_the_open_limit_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import duckdb

    path = tmp_path / "long.csv"
    literal = str(path).replace("'", "''")
    duckdb.execute(f"COPY (SELECT i AS id, 'name' || (i % 97) AS name, i * 0.5 AS value FROM range(3000000) t(i)) "
                   f"TO '{literal}' (HEADER)")  # 60 MB: a tenth of a second of DuckDB's reading at the very least
    monkeypatch.setattr(table_module, "OPEN_TIMEOUT_SECONDS", 0.01)
    try:
        with pytest.raises(TableError, match=r"reading long.csv took over 0.01 s and was stopped") as stopped:
            Table(path)
    finally:
        path.unlink()  # pytest keeps the last runs' folders
    assert stopped.value.hint == "give a smaller file"


def test_commas_in_quotes_or_on_later_lines_do_not_count_as_columns(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text('"a note, with ' + "," * (2 * MAX_COLUMNS) + ' commas",n\n"short",1\n')
    table = Table(path)
    assert [c.name for c in table.columns][1] == "n" and table.rows == 1
    table.close()
    # Lines that end in \r alone (an old Mac's): the first line is not the whole file.
    path.write_bytes(b"name,n\r" + b"a,1\r" * 3000)
    table = Table(path)
    assert [c.name for c in table.columns] == ["name", "n"] and table.rows == 3000
    table.close()


# ----- the corpus -----

# Each file and what opening it must give: the table's column names, or words of its refusal.
CORPUS_OUTCOMES = {
    "bom-and-non-ascii-names.csv": ["名前", "Ünïcödé", "value"],
    "header-of-1001-columns.csv": "has 1001 columns; homellm reads tables of up to 1000",  # (new) DuckDB read it
    "json-array-after-a-bom.json": ["city", "n"],  # was one column "json" holding the whole array
    "json-deeper-than-128.json": "cannot be read as a table: JSON exceeds maximum recursion depth of 128",
    "json-duplicate-keys.json": 'has duplicate key "a"',
    "json-lone-surrogate.json": "no low surrogate in string",
    "mixed-newlines.csv": "no one separator, quote and line end fit all of its lines",
    "nul-in-values.csv": ["name", "note"],
    "quote-never-closes.csv": ["a", "b"],
    "ragged-rows.tsv": ["column0", "column1", "column2"],  # its first 2 lines left out: now said
    "utf32-with-bom.csv": "is UTF-32 text",  # (new) read as UTF-16, NULs in every name
}


def test_the_corpus_is_the_listed_small_files() -> None:
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(CORPUS_OUTCOMES)
    assert all(p.stat().st_size < 10_000 for p in CORPUS.iterdir())


@pytest.mark.parametrize("name", sorted(CORPUS_OUTCOMES))
def test_corpus_file_has_its_outcome(name: str) -> None:
    expected = CORPUS_OUTCOMES[name]
    if isinstance(expected, list):
        table = Table(CORPUS / name)
        try:
            assert [c.name for c in table.columns] == expected
        finally:
            table.close()
        assert isinstance(check_table(CORPUS / name), Table)
        if name == "ragged-rows.tsv":
            table = Table(CORPUS / name)
            assert "The first 2 lines of the file were left out" in table.describe() and table.rows == 1
            table.close()
    else:
        refused = check_table(CORPUS / name)
        assert isinstance(refused, TableError) and expected in refused.message


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("table-fuzz")
