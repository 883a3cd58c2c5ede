"""The table and JSON tools on files the tests write, through real DuckDB."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from homellm.errors import InvalidRequestError
from homellm.tools.json_explore import JsonFile
from homellm.tools.loop import ToolFunction, run_tool
from homellm.tools.table import Table, TableError

HOSTILE_HEADER = ['name', 'select', 'my "quoted" col', 'two words', 'drop table t; --']


@pytest.fixture
def hostile_csv(tmp_path: Path) -> Path:
    path = tmp_path / "odd names.csv"
    header = ",".join('"' + h.replace('"', '""') + '"' for h in HOSTILE_HEADER)
    rows = [f"row{i},{i},{i * 2},{'red' if i % 2 else 'blue'},NA" for i in range(10)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_columns_with_quotes_spaces_and_keywords_are_queried_safely(hostile_csv: Path) -> None:
    table = Table(hostile_csv)
    assert [c.name for c in table.columns] == HOSTILE_HEADER and table.rows == 10
    assert table.query({"operation": "sum", "column": "select"})["value"] == 45
    assert table.query({"operation": "max", "column": 'my "quoted" col'})["value"] == 18
    grouped = table.query({"operation": "count", "column": "*", "group_by": "two words"})
    assert sorted(grouped["rows"]) == [["blue", 5], ["red", 5]]
    filtered = table.query({"operation": "count", "column": "*",
                            "filters": [{"column": "name", "op": "=", "value": "x'); DROP TABLE t; --"}]})
    assert filtered["value"] == 0 and table.rows == 10
    assert table.query({"operation": "count", "column": "drop table t; --"})["value"] == 0  # NA is NULL
    table.close()


def test_external_access_is_off_once_the_table_is_open(hostile_csv: Path) -> None:
    table = Table(hostile_csv)
    for statement in ("SELECT * FROM read_csv_auto('/etc/passwd')", "COPY t TO '/tmp/leak.csv'",
                      "SET enable_external_access = true", "ATTACH '/tmp/other.db'", "INSTALL httpfs"):
        with pytest.raises(TableError):
            table.sql(statement)
    assert table.query({"operation": "count", "column": "*"})["value"] == 10
    with pytest.raises(TableError, match="not a table file"):
        Table(Path("/etc/passwd"))
    table.close()


def test_parquet_and_json_tables(tmp_path: Path) -> None:
    parquet = tmp_path / "t.parquet"
    duckdb.sql(f"COPY (SELECT range AS n, range % 3 AS k FROM range(30)) TO '{parquet}' (FORMAT parquet)")
    assert Table(parquet).query({"operation": "mean", "column": "n"})["value"] == 14.5
    records = tmp_path / "t.json"
    records.write_text(json.dumps([{"city": "Oslo", "t": 3, "geo": {"n": 1}, "tags": [1, 2]},
                                   {"city": "Rome", "t": 19, "geo": {"n": 2}, "tags": [3]}]))
    table = Table(records)
    assert table.query({"operation": "max", "column": "t"})["value"] == 19
    kinds = {c.name: c.numeric for c in table.columns}
    assert kinds == {"city": False, "t": True, "geo": False, "tags": False}  # a STRUCT or a list is no number
    assert table.mentioned_values("what about 2 and 19?") == {"t": [19]}


@pytest.mark.parametrize("content, name", [(b"\x00\x01\x02binary" * 100, "blob.csv"), (b"", "empty.csv"),
                                           (b"not json at all", "bad.json")])
def test_a_file_that_is_not_a_table_is_a_clear_error(tmp_path: Path, content: bytes, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TableError, match="cannot be read as a table|has no columns|binary|empty"):
        Table(path)


def test_bad_structured_queries_are_refused_with_the_columns(hostile_csv: Path) -> None:
    table = Table(hostile_csv)
    with pytest.raises(TableError) as refused:
        table.query({"operation": "max", "column": "nope"})
    assert "no column named 'nope'" in refused.value.one_line() and "columns: name, select" in refused.value.hint
    with pytest.raises(TableError, match="not a number"):
        table.query({"operation": "mean", "column": "name"})
    with pytest.raises(TableError, match="unknown operation"):
        table.query({"operation": "delete", "column": "*"})


def test_query_schema_narrows_to_what_the_question_mentions(tmp_path: Path) -> None:
    path = tmp_path / "penguins.csv"
    path.write_text("species,island,body_mass_g\nAdelie,Dream,3700\nGentoo,Biscoe,5000\nGentoo,Biscoe,5200\n")
    table = Table(path)
    narrowed = table.query_schema("What is the mean body mass of Gentoo penguins?")["properties"]
    assert narrowed["operation"]["enum"] == ["mean"] and narrowed["column"]["enum"] == ["body_mass_g"]
    assert narrowed["filters"]["items"]["properties"]["value"]["enum"] == ["Gentoo"]
    assert "group_by" not in narrowed
    grouped = table.query_schema("How many penguins live on each island?")["properties"]
    assert grouped["operation"]["enum"] == ["count"] and "filters" not in grouped
    assert grouped["group_by"]["enum"] == ["island"] and "group_by" in table.query_schema(
        "How many penguins live on each island?")["required"]
    assert "Gentoo" in table.examples("table_query") or "Adelie" in table.examples("table_query")


def test_json_explore_walks_paths_within_limits(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps({"items": [{"name": f"n{i}", "tags": ["a"] * i} for i in range(30)],
                                "meta": {"version": 2, "note": "x" * 1000}}))
    doc = JsonFile(path)
    top = doc.explore("")
    assert top["type"] == "object" and top["keys"] == {"items": "array", "meta": "object"}
    items = doc.explore("items")
    assert items["length"] == 30 and len(items["items"]) == 10 and "20 more items" in items["note"]
    assert doc.explore("items[3].name")["value"] == "n3"
    assert doc.explore("$.items.4.tags")["length"] == 4
    assert doc.explore("meta.note")["value"].endswith("…")
    with pytest.raises(InvalidRequestError) as refused:
        doc.explore("nope")
    assert "no key 'nope'" in refused.value.message and refused.value.hint == "keys: items, meta"
    with pytest.raises(InvalidRequestError, match=r"no item \[99\]"):
        doc.explore("items[99]")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidRequestError, match="not JSON"):
        JsonFile(bad)


def test_a_huge_tool_result_is_cut_with_a_note() -> None:
    tool = ToolFunction("big", "", {"type": "object"}, lambda args: {"rows": ["x" * 100] * 1000})
    shown, text, ok = run_tool(tool, {})
    assert ok and len(text) < 4200 and "[cut: the result was" in text
    failing = ToolFunction("fails", "", {"type": "object"},
                           lambda args: (_ for _ in ()).throw(TableError("no column named 'x'")))
    shown, text, ok = run_tool(failing, {})
    assert not ok and "no column named" in json.loads(text)["error"]


@pytest.fixture
def packages_csv(tmp_path: Path) -> Path:
    path = tmp_path / "packages.csv"
    rows = [("zlib", 120, "libs"), ("bash", 7000, "shells"), ("zsh", 6500, "shells"), ("curl", 450, "net"),
            ("wget", 3100, "net"), ("openssl", 5200, "libs"), ("dash", 200, "shells")]
    path.write_text("name,installed_size_kb,categories\n" + "".join(f"{n},{s},{c}\n" for n, s, c in rows))
    return path


def test_rows_with_the_largest_and_smallest_values(packages_csv: Path) -> None:
    table = Table(packages_csv)
    top = table.query({"operation": "argmax", "column": "installed_size_kb"})
    assert top["by"] == "installed_size_kb" and top["rows"] == [["bash", 7000, "shells"]]
    assert table.query({"operation": "argmin", "column": "installed_size_kb"})["rows"][0][0] == "zlib"
    three = table.query({"operation": "top", "column": "installed_size_kb", "limit": 3})
    assert [r[0] for r in three["rows"]] == ["bash", "zsh", "openssl"]
    filtered = table.query({"operation": "bottom", "column": "installed_size_kb", "limit": 2,
                            "filters": [{"column": "categories", "op": "=", "value": "net"}]})
    assert [r[0] for r in filtered["rows"]] == ["curl", "wget"]
    with pytest.raises(TableError, match="not a number"):
        table.query({"operation": "argmax", "column": "name"})
    with pytest.raises(TableError, match="limit"):
        table.query({"operation": "top", "column": "installed_size_kb", "limit": 500})


def test_groups_sort_either_way_and_ties_go_by_name(packages_csv: Path) -> None:
    table = Table(packages_csv)
    most = table.query({"operation": "count", "column": "*", "group_by": "categories", "limit": 1})
    assert most["rows"] == [["shells", 3]]
    # libs and net tie at 2: the name decides, so the same question always gets the same group.
    fewest = table.query({"operation": "count", "column": "*", "group_by": "categories", "order": "asc"})
    assert fewest["rows"] == [["libs", 2], ["net", 2], ["shells", 3]]


def test_between_and_narrowed_comparisons(packages_csv: Path) -> None:
    table = Table(packages_csv)
    between = {"operation": "count", "column": "*",
               "filters": [{"column": "installed_size_kb", "op": "between", "value": [6500, 200]}]}
    assert table.query(between)["value"] == 5  # bounds in either order
    with pytest.raises(TableError, match="two numbers"):
        table.query({**between, "filters": [{"column": "installed_size_kb", "op": "between", "value": 3}]})
    schema = table.query_schema("How many packages have an installed size between 200 and 6500?")["properties"]
    item = schema["filters"]["items"]["properties"]
    assert item["op"]["enum"] == ["between"] and item["column"]["enum"] == ["installed_size_kb"]
    assert item["value"] == {"type": "array", "items": {"enum": [200, 6500]}, "minItems": 2, "maxItems": 2}
    over = table.query_schema("How many packages are larger than 1000 kb?")["properties"]["filters"]
    assert over["items"]["properties"]["op"]["enum"] == [">"]


def test_column_names_match_the_questions_words(packages_csv: Path) -> None:
    table = Table(packages_csv)
    assert table.mentioned_columns("Which category has the most rows?") == ["categories"]
    assert table.mentioned_columns("What is the largest installed size?") == ["installed_size_kb"]
    grouped = table.query_schema("Which category has the most rows?")
    assert grouped["properties"]["group_by"] == {"enum": ["categories"]}
    assert {"group_by", "order", "limit"} <= set(grouped["required"])
    distinct = table.query_schema("How many distinct categories are there?")["properties"]
    assert distinct["operation"] == {"enum": ["count_distinct"]} and distinct["column"] == {"enum": ["categories"]}
    argmax = table.query_schema("Which name has the largest installed size?")["properties"]
    assert argmax["operation"] == {"enum": ["argmax"]} and argmax["column"] == {"enum": ["installed_size_kb"]}


STORE = {"store": {"name": "Corner Books", "books": [{"title": "Dune", "price": 8.95},
                                                     {"title": "Emma", "price": 12.5}]},
         "opened": 1999}


def test_json_paths_offered_reach_the_keys_the_question_names(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    path.write_text(json.dumps(STORE))
    doc = JsonFile(path)
    offered = doc.schema("What is the price of the second book?")["properties"]["path"]["enum"]
    assert offered == ["store.books[1].price", ""]
    # Without an ordinal the array's items are not guessed: the array itself is as deep as it goes.
    assert doc.schema("Which books are there?")["properties"]["path"]["enum"] == ["store.books", ""]
    assert doc.schema("When was it opened?")["properties"]["path"]["enum"] == ["opened", ""]
    assert doc.schema("What is the title of the last book?")["properties"]["path"]["enum"] == [
        "store.books[1].title", ""]


def test_a_json_object_that_leads_to_the_named_key_is_followed(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    path.write_text(json.dumps(STORE))
    doc = JsonFile(path)
    question = "What is the price of the first book?"
    onward = doc.follow(question)
    nxt = onward({"path": ""}, doc.explore(""))
    assert nxt is not None and nxt["properties"]["path"]["enum"] == ["store.books[0].price"]
    assert onward({"path": "store.books[0].price"}, doc.explore("store.books[0].price")) is None  # a value answers
    # A question about the object's own shape is answered by the object.
    assert doc.follow("Which keys does the store have?")({"path": "store"}, doc.explore("store")) is None
    # Nothing named lies deeper: the object answers.
    assert doc.follow("What is this file?")({"path": ""}, doc.explore("")) is None


def test_one_huge_json_array_is_refused_past_the_limit_and_read_as_a_table(tmp_path: Path) -> None:
    from homellm.tools.json_explore import MAX_FILE_BYTES
    from homellm.tools.table import Table

    record = b'{"city": "Oslo", "t": 3},'
    path = tmp_path / "huge.json"
    with path.open("wb") as handle:
        handle.write(b"[")
        block = record * 40_000
        for _ in range(MAX_FILE_BYTES // len(block) + 1):
            handle.write(block)
        handle.write(b'{"city": "Rome", "t": 9}]')
    with pytest.raises(InvalidRequestError) as refused:
        JsonFile(path)
    assert "reads up to 64 MiB" in refused.value.message and "--table" in (refused.value.hint or "")
    table = Table(path)  # the hint holds: DuckDB reads the whole array
    try:
        assert table.rows > 2_600_000 and table.query({"operation": "max", "column": "t"})["value"] == 9
    finally:
        table.close()
        path.unlink()
