"""Files and questions a user may give `homellm ask --table` that are not the tidy CSV the tools were
tuned on (issue 22, "Bad input"): each is answered or refused in one line, and no other file is read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from conftest import generation_timeout

from homellm.tools.loop import ANSWER_TOKENS, CALL_TOKENS, DEFAULT_MAX_STEPS
from homellm.tools.narrowing import asked_operation
from homellm.tools.table import Table, TableError

HOMELLM = str(Path(sys.executable).with_name("homellm"))
ASK_TIMEOUT = generation_timeout(DEFAULT_MAX_STEPS * CALL_TOKENS + ANSWER_TOKENS)  # every step's call, then the answer
PENGUINS = ("species,island,body_mass_g\nAdelie,Torgersen,3750\nGentoo,Biscoe,5000\nAdelie,Dream,3500\n"
            "Chinstrap,Dream,3700\n")


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


@pytest.fixture
def penguins_csv(tmp_path: Path) -> Path:
    return write(tmp_path / "penguins.csv", PENGUINS)


# ----- empty files -----

def test_an_empty_file_is_refused_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(TableError, match=r"empty \(0 bytes\)") as refused:
        Table(write(tmp_path / "empty.csv", b""))
    assert refused.value.hint and refused.value.param == "table"


def test_a_header_only_csv_has_no_rows_and_counts_zero(tmp_path: Path) -> None:
    table = Table(write(tmp_path / "header.csv", "name,price\n"))
    assert [c.name for c in table.columns] == ["name", "price"] and table.rows == 0
    assert table.query({"operation": "count", "column": "*"})["value"] == 0
    assert table.query({"operation": "list", "column": "name"})["rows"] == []
    assert "no rows" in table.describe() and "First 0 rows" not in table.describe()
    assert table.query_schema("How many rows are there?")["properties"]["operation"] == {"enum": ["count"]}
    with pytest.raises(TableError, match="is not a number"):  # no rows to say price holds numbers
        table.query({"operation": "mean", "column": "price"})
    table.close()


# ----- column names -----

def test_columns_named_like_sql_are_only_ever_columns(tmp_path: Path) -> None:
    names = ["select", '"; drop table x; --', "from", 'a "quoted" name with spaces']
    header = ",".join('"' + n.replace('"', '""') + '"' for n in names)
    table = Table(write(tmp_path / "sql.csv", f"{header}\n1,2,3,north\n5,6,7,south\n9,10,11,north\n"))
    assert [c.name for c in table.columns] == names
    assert table.query({"operation": "sum", "column": "select"})["value"] == 15
    assert table.query({"operation": "max", "column": '"; drop table x; --'})["value"] == 10
    assert sorted(table.query({"operation": "sum", "column": "from", "group_by": names[3]})["rows"]) == \
        [["north", 14], ["south", 7]]
    where = {"column": names[3], "op": "=", "value": "north"}
    assert table.query({"operation": "count", "column": "*", "filters": [where]})["value"] == 2
    assert table.query({"operation": "count", "column": "*"})["value"] == 3 == table.rows  # nothing dropped
    table.close()


def test_empty_and_duplicated_column_names_get_names_of_their_own(tmp_path: Path) -> None:
    table = Table(write(tmp_path / "names.csv", "a,,a,b\n1,2,3,x\n4,5,6,y\n"))
    names = [c.name for c in table.columns]
    assert len(set(names)) == 4 and names[0] == "a" and names[3] == "b" and all(names)
    assert [table.query({"operation": "sum", "column": n})["value"] for n in names[:3]] == [5, 7, 9]
    assert all(f"- {n} (" in table.describe() for n in names)
    table.close()


# ----- no other file -----

def test_nothing_in_a_query_reads_another_file(tmp_path: Path) -> None:
    secret = write(tmp_path / "secret.csv", "password\nhunter2\n")
    sneaky = f"read_csv('{secret}')"
    table = Table(write(tmp_path / "it's here.csv", f'"{sneaky}",note\n1,a\n2,b\n'))
    assert table.columns[0].name == sneaky
    assert table.query({"operation": "sum", "column": sneaky})["value"] == 3  # a column, never a call
    for value in (sneaky, f"x') UNION SELECT * FROM {sneaky} --", f"'; SELECT * FROM {sneaky}; --"):
        found = table.query({"operation": "count", "column": "*",
                             "filters": [{"column": "note", "op": "=", "value": value}]})
        assert found["value"] == 0
    with pytest.raises(TableError, match="no column named"):
        table.query({"operation": "count", "column": "*", "group_by": f"* FROM {sneaky} --"})
    # Even SQL of our own cannot reach the file beside the table, nor switch the guard off.
    for statement in (f"SELECT * FROM {sneaky}", f"SELECT * FROM '{secret}'",
                      f"SET allowed_paths = ['{secret}']", "SET enable_external_access = true",
                      "RESET enable_external_access", "SET lock_configuration = false"):
        with pytest.raises(TableError):
            table.sql(statement)
    assert "hunter2" not in table.describe() + json.dumps(table.query({"operation": "list", "column": "note"}))
    table.close()


# ----- a large file -----

def test_a_200_mb_csv_is_read_by_duckdb_not_into_python(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    block = "".join(f"{i},station{i % 40},{i * 0.5:.1f},{'north' if i % 3 else 'south'}\n"
                    for i in range(20_000)).encode()
    repeats = 200_000_000 // len(block) + 1
    with path.open("wb") as handle:
        handle.write(b"id,station,temperature,region\n")
        for _ in range(repeats):
            handle.write(block)
    tracemalloc.start()
    try:
        table = Table(path)
        mean = table.query({"operation": "mean", "column": "temperature", "group_by": "region"})
        schema = table.query_schema("What is the average temperature in the north region?")
        peak = tracemalloc.get_traced_memory()[1]
        table.close()
    finally:
        tracemalloc.stop()
        path.unlink()  # pytest keeps the last runs' folders: do not leave 200 MB in each
    assert table.rows == 20_000 * repeats and len(block) * repeats > 200_000_000
    assert [row[0] for row in mean["rows"]] == ["north", "south"]
    assert schema["properties"]["filters"]["items"]["properties"]["value"] == {"enum": ["north"]}
    assert peak < 50_000_000  # a quarter of the file; Python itself holds a few MB


# ----- encodings -----

def test_a_latin1_csv_is_read_as_latin1(tmp_path: Path) -> None:
    rows = "name,city\n" + "Ann,Oslo\n" * 30_000 + "René,Montréal\nJosé,Orléans\n"  # past DuckDB's first look
    table = Table(write(tmp_path / "latin1.csv", rows.encode("latin-1")))
    assert table.encoding == "latin-1" and table.rows == 30_002
    assert table.query({"operation": "list", "column": "city"})["rows"][-2:] == [["Montréal"], ["Orléans"]]
    assert table.mentioned_values("How many people live in Montréal?") == {"city": ["Montréal"]}
    table.close()


def test_utf16_text_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    text = "name\tcity\nRené\tMontréal\nAnn\tOslo\n"
    table = Table(write(tmp_path / "unicode.txt", text.encode("utf-16")))  # Excel's "Unicode text"
    assert table.encoding == "utf-16" and [c.name for c in table.columns] == ["name", "city"]
    assert table.query({"operation": "count", "column": "*",
                        "filters": [{"column": "city", "op": "=", "value": "Montréal"}]})["value"] == 1
    table.close()
    with pytest.raises(TableError, match="UTF-16") as refused:
        Table(write(tmp_path / "big-endian.csv", b"\xfe\xff" + text.encode("utf-16-be")))
    assert refused.value.hint == "save it as UTF-8"


@pytest.mark.parametrize(("name", "data", "says"), [
    ("nul.csv", bytes(range(256)) * 40, "binary, not a text table"),
    ("high.csv", bytes(range(128, 256)) * 40, "neither UTF-8 nor Latin-1"),
    ("cp1252.csv", "name,note\nRené,don’t\n".encode("cp1252"), "neither UTF-8 nor Latin-1"),
    ("latin1.json", '[{"city": "Montréal"}]'.encode("latin-1"), "not UTF-8 text"),
])
def test_a_file_in_no_encoding_read_is_refused_in_one_line(tmp_path: Path, name: str, data: bytes,
                                                           says: str) -> None:
    with pytest.raises(TableError, match=says) as refused:
        Table(write(tmp_path / name, data))
    assert "UTF-8" in refused.value.hint and "\n" not in refused.value.one_line()


def test_a_value_past_the_sampled_rows_that_breaks_the_type_is_read_as_text(tmp_path: Path) -> None:
    table = Table(write(tmp_path / "late.csv", "n,s\n" + "1,a\n" * 30_000 + "about 3,b\n"))
    assert [c.type for c in table.columns] == ["VARCHAR", "VARCHAR"] and table.rows == 30_001
    assert table.query({"operation": "count", "column": "*",
                        "filters": [{"column": "n", "op": "=", "value": "about 3"}]})["value"] == 1
    table.close()
    with pytest.raises(TableError, match=r"line 30002: Expected Number of Columns: 2 Found: 3"):
        Table(write(tmp_path / "ragged.csv", "n,s\n" + "1,a\n" * 30_000 + "1,b,c\n"))
    lines = [json.dumps({"n": 1})] * 30_000 + [json.dumps({"n": "about 3"})]
    table = Table(write(tmp_path / "late.jsonl", "\n".join(lines)))
    assert table.rows == 30_001 and not table.columns[0].numeric
    table.close()


# ----- questions in other languages -----

@pytest.mark.parametrize(("question", "operation", "filters"), [
    ("Combien de pingouins y a-t-il ?", "count", None),
    ("Quelle est la masse moyenne des Adelie ?", "mean", ["Adelie"]),
    ("Wie viele Pinguine leben auf der Insel Dream?", "count", ["Dream"]),
    ("Welcher Pinguin hat die größte Körpermasse?", "max", None),
    ("¿Cuántos pingüinos hay?", "count", None),
    ("有多少只企鹅？", "count", None),
    ("Adelie企鹅的平均体重是多少？", "mean", ["Adelie"]),
])
def test_a_question_in_another_language_narrows_like_its_english(penguins_csv: Path, question: str,
                                                                 operation: str, filters: list[str] | None) -> None:
    schema = Table(penguins_csv).query_schema(question)["properties"]
    assert schema["operation"] == {"enum": [operation]}
    if operation != "count":
        assert schema["column"] == {"enum": ["body_mass_g"]}
    found = schema.get("filters", {}).get("items", {}).get("properties", {}).get("value", {}).get("enum")
    assert found == filters


@pytest.mark.parametrize("question", ["哪个岛上的企鹅最多？", "Was ist hier los?", "", "???", "\x00"])
def test_a_question_nothing_reads_leaves_every_choice_open(penguins_csv: Path, question: str) -> None:
    schema = Table(penguins_csv).query_schema(question)
    assert len(schema["properties"]["operation"]["enum"]) > 1 and "filters" in schema["properties"]


@pytest.mark.parametrize("question", ["Combien pèse un Gentoo ?", "Wie viel wiegt ein Gentoo?", "北京的人口是多少？",
                                      "Which media has a mayor?"])
def test_how_much_and_english_look_alikes_are_not_read_as_a_count(question: str) -> None:
    assert asked_operation(question) is None


def test_a_value_named_among_chinese_characters_is_found_but_not_inside_a_longer_word(tmp_path: Path) -> None:
    table = Table(write(tmp_path / "cities.csv", "城市,人口,region\n北京,2189,Orl\n上海,2487,north\n"))
    assert table.mentioned_values("北京的人口是多少？") == {"城市": ["北京"]}
    assert table.mentioned_values("Who lives in Orléans or north_east?") == {}
    table.close()


# ----- through the command line -----

def test_ask_refuses_a_bad_table_in_one_line_before_loading_a_model(tmp_path: Path) -> None:
    env = {**os.environ, "HOMELLM_HOME": str(tmp_path / "home")}
    for name, data in (("empty.csv", b""), ("garbage.csv", bytes(range(128, 256)) * 40)):
        done = subprocess.run([HOMELLM, "ask", "--table", str(write(tmp_path / name, data)), "How many rows?"],
                              env=env, capture_output=True, text=True, timeout=generation_timeout(0))
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.count("\n") == 1 and "hint:" in done.stderr and "Traceback" not in done.stderr


def test_ask_answers_a_german_question_about_an_english_table(penguins_csv: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HOMELLM_HOME": str(tmp_path / "home")}
    done = subprocess.run([HOMELLM, "ask", "--table", str(penguins_csv), "--temperature", "0", "--json",
                           "Wie viele Pinguine leben auf der Insel Dream?"], env=env, capture_output=True,
                          text=True, timeout=ASK_TIMEOUT)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["result"]["value"] == 2 and "island" in body["steps"][0]["result"]
