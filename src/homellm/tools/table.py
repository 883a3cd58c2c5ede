"""`table_query`: questions over a CSV, Parquet or JSON table through DuckDB, in-process and read-only.

The file is registered as a view, then DuckDB's external access is switched off
and its configuration locked: only that file can be read, nothing can be written,
attached or installed. The model never writes SQL or code; it fills a structured
query (an operation, columns chosen from the table's real ones, filters, a group)
that is compiled here to one SELECT with quoted identifiers and bound values.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from homellm.docs.loaders import looks_binary
from homellm.errors import InvalidRequestError
from homellm.tools.narrowing import (
    MAX_TOP,
    asked_comparison,
    asked_operation,
    asks_contains,
    asks_negation,
    names_column,
    numbers,
    quoted,
    top_count,
    which_word,
)

MAX_ROWS = 50
TIMEOUT_SECONDS = 10.0
# Reading the whole file when it opens (see _open): a 200 MB CSV takes seconds. DuckDB stops at its next
# check for an interrupt, which can come seconds after this.
OPEN_TIMEOUT_SECONDS = 120.0
# The prompt lists every column and the call's grammar offers each one: past a thousand, neither fits a
# model. DuckDB also took 90 s to open a CSV of 100,000 columns, so a CSV's first line is counted first.
MAX_COLUMNS = 1000
_MAX_LINE_BYTES = 2_000_000  # DuckDB's own limit on a CSV line
SAMPLE_ROWS = 3
OPERATIONS = ("count", "count_distinct", "mean", "sum", "min", "max", "median", "list", "argmax", "argmin",
              "top", "bottom")
# Operations that answer with whole rows ordered by a numeric column: the row with the largest value, the n largest.
ROW_OPERATIONS = {"argmax": ("DESC", 1), "argmin": ("ASC", 1), "top": ("DESC", None), "bottom": ("ASC", None)}
NUMERIC_OPERATIONS = frozenset({"mean", "sum", "median", "min", "max", *ROW_OPERATIONS})
FILTER_OPS = ("=", "!=", "<", "<=", ">", ">=", "contains", "between")
DEFAULT_TOP = 3
_NUMERIC_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                            "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "REAL", "NUMERIC"})
_READERS = {".csv": "read_csv_auto", ".tsv": "read_csv_auto", ".txt": "read_csv_auto",
            ".parquet": "read_parquet", ".json": "read_json_auto", ".jsonl": "read_json_auto",
            ".ndjson": "read_json_auto"}

# Chinese, Japanese and Korean write without spaces ("北京的人口", "Adelie企鹅"): their characters
# end a word of another script as a space does.
_CJK = re.compile("[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]")


class TableError(InvalidRequestError):
    """A file that is not a table, or a query the table cannot answer."""

    code = "table_error"


@dataclass(frozen=True)
class Column:
    """A column's name and DuckDB type."""

    name: str
    type: str

    @property
    def numeric(self) -> bool:
        """Whether means and sums make sense (a STRUCT or a list of integers is not a number)."""
        base = self.type.upper().split("(")[0].strip()
        return base in _NUMERIC_TYPES


def quote_identifier(name: str) -> str:
    """A column name as a SQL identifier, whatever quotes, spaces or keywords it holds."""
    return '"' + name.replace('"', '""') + '"'


class Table:
    """One table file opened read-only in its own DuckDB connection."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.name = self.path.stem
        reader = _READERS.get(self.path.suffix.lower())
        if reader is None:
            raise TableError(f"{self.path.name} is not a table file homellm reads",
                             hint="give a .csv, .tsv, .parquet, .json or .jsonl file", param="table")
        try:
            if not self.path.is_file():
                raise TableError(f"{self.path} does not exist", hint="check the path", param="table")
            if self.path.stat().st_size == 0:
                raise TableError(f"{self.path.name} is empty (0 bytes), not a table",
                                 hint="give a file with a header line and rows", param="table")
            self.encoding = _encoding(self.path, reader)
            if reader == "read_csv_auto":
                _check_width(self.path, _first_line_fields(self.path))
            self._json_array = _json_array_after_bom(self.path, reader)
        except OSError as exc:
            raise TableError(f"{self.path.name} cannot be read ({exc.strerror or exc})",
                             hint="check the file's permissions", param="table") from None
        self._lock = threading.Lock()
        self._con, described, self.rows, self.skipped_lines = self._read(reader)
        self.columns = [Column(str(row[0]), str(row[1])) for row in described]
        if not self.columns or len(self.columns) > MAX_COLUMNS:
            self._con.close()
            if not self.columns:
                raise TableError(f"{self.path.name} has no columns", hint="give a file with a header line and rows",
                                 param="table")
            _check_width(self.path, len(self.columns))

    def _read(self, reader: str) -> tuple[Any, list[tuple[Any, ...]], int, int]:
        """Open the file in DuckDB, trying again the ways a user's file commonly differs from what was guessed."""
        import duckdb

        real = str(self.path.resolve())
        whole_sample = False
        while True:
            try:
                return _open(real, reader, self.encoding, whole_sample, self._json_array)
            except duckdb.InterruptException:
                raise TableError(f"reading {self.path.name} took over {OPEN_TIMEOUT_SECONDS:g} s and was stopped",
                                 hint="give a smaller file", param="table") from None
            except duckdb.Error as exc:
                text = str(exc).lower()
                if reader == "read_csv_auto" and self.encoding == "utf-8" and "not utf-8 encoded" in text:
                    # Spreadsheets saved on Windows are often Latin-1: read them as such rather than refuse.
                    self.encoding = "latin-1"
                elif reader != "read_parquet" and not whole_sample and (
                        text.startswith("conversion error") or "json transform error" in text):
                    # Types are guessed from the first rows; a later value that does not fit (a note in a
                    # column of numbers) has DuckDB guess again from the whole file.
                    whole_sample = True
                else:
                    raise _unreadable(self.path, exc) from None

    # ----- what the model is told -----

    def describe(self) -> str:
        """Columns, types, row count and a few rows, for the prompt."""
        sample = self.sql("SELECT * FROM t LIMIT ?", [SAMPLE_ROWS])
        lines = [f"Table {self.name} ({self.path.name}): {self.rows} rows.", "Columns:"]
        if self.skipped_lines:
            lines.insert(1, f"The first {self.skipped_lines} lines of the file were left out: they do not fit "
                            "the table's columns.")
        lines += [f"- {c.name} ({c.type})" for c in self.columns]
        if not sample:
            lines.append("It has no rows, only the header.")
            return "\n".join(lines)
        lines.append(f"First {len(sample)} rows:")
        lines += [", ".join(f"{c.name}={_short(v)}" for c, v in zip(self.columns, row)) for row in sample]
        return "\n".join(lines)

    def query_schema(self, question: str | None = None) -> dict[str, Any]:
        """The JSON schema of a structured query over this table: columns come from an enum of the real ones.

        Given the question, the choices narrow to what it names (see narrowing.py): its columns, the
        operation, order and count its words decide, filters on the table's values it names, the numbers
        it compares with and the text it quotes. A 135M model offered every choice fills them with noise.
        """
        if question is None:
            return self._open_schema()
        names = [c.name for c in self.columns]
        count = top_count(question)
        values = self.mentioned_values(question, leave_out=count)
        by = self.which_column(question)
        named = self.mentioned_columns(question)
        mentioned = [c for c in named if c != by] or named
        # A column named only for its value ("where cylinders is 5") is not the one to aggregate.
        measured = [c for c in mentioned if c not in values] or mentioned
        numeric = [c for c in measured if self._column(c).numeric]
        asked = asked_operation(question, bool(numeric))
        operations = list(asked.operations) if asked else list(OPERATIONS)
        columns = measured or names
        properties: dict[str, Any] = {"operation": {"enum": operations}, "column": {"enum": ["*", *columns]}}
        if asked and set(operations) <= NUMERIC_OPERATIONS:
            properties["column"] = {"enum": numeric or [c.name for c in self.columns if c.numeric] or names}
        elif asked and operations == ["count"]:
            properties["column"] = {"const": "*"}  # rows are counted; count(column) would skip its nulls
        elif asked and operations == ["count_distinct"]:
            properties["column"] = {"enum": [by] if by else columns}
        required = ["operation", "column"]
        if asked and set(operations) & set(ROW_OPERATIONS) and by is not None:
            properties["label"] = {"const": by}  # "which year has the smallest gas": the year is the answer
            required.append("label")
        if asked and asked.grouped:
            groups = [by] if by else [c for c in columns if not self._column(c).numeric] or \
                [c.name for c in self.columns if not c.numeric] or names
            properties["group_by"] = {"enum": groups}
            properties["order"] = {"const": asked.order}
            required += ["group_by", "order"]
        if asked and asked.limit is not None:
            properties["limit"] = {"const": asked.limit}
            required.append("limit")
        filters = self._filter_schema(question, named, values, count)
        if filters is not None:
            properties["filters"] = filters
            required.append("filters")  # the question named a value or a bound: leaving it out is wrong
        elif asked is None:
            properties["filters"] = self._open_filters()
        return {"type": "object", "additionalProperties": False, "required": required, "properties": properties}

    def _open_schema(self) -> dict[str, Any]:
        """Every choice, for a query made without a question (the API's own tools)."""
        names = [c.name for c in self.columns]
        groups = [c.name for c in self.columns if not c.numeric] or names
        return {"type": "object", "additionalProperties": False, "required": ["operation", "column"],
                "properties": {"operation": {"enum": list(OPERATIONS)}, "column": {"enum": ["*", *names]},
                               "group_by": {"anyOf": [{"enum": groups}, {"type": "null"}]},
                               "order": {"enum": ["desc", "asc"]}, "label": {"enum": names},
                               "limit": {"type": "integer", "minimum": 1, "maximum": MAX_TOP},
                               "filters": self._open_filters()}}

    def _open_filters(self) -> dict[str, Any]:
        value = {"anyOf": [{"type": "number"}, {"type": "string"},
                           {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}]}
        return {"type": "array", "maxItems": 2, "items": _filter_item([c.name for c in self.columns],
                                                                      list(FILTER_OPS), value)}

    def _filter_schema(self, question: str, named: list[str], values: dict[str, list[Any]],
                       count: int | None) -> dict[str, Any] | None:
        """Filters the question asks for, or None: equality on the table's text values it names, a
        comparison with the numbers it gives, `contains` with the text it quotes. `named`: the columns
        it names."""
        text = {c: vs for c, vs in values.items() if not self._column(c).numeric}
        numbers_named = {c: vs for c, vs in values.items() if self._column(c).numeric}
        compare = asked_comparison(question)
        shapes: list[dict[str, Any]] = []
        most = 0
        texts = [c.name for c in self.columns if not c.numeric]
        if asks_contains(question) and texts:
            shapes.append(_filter_item([c for c in named if not self._column(c).numeric] or texts, ["contains"],
                                       {"enum": quoted(question)}))
            most += 1
        elif text:
            found = sorted({v for vs in text.values() for v in vs}, key=str)
            # "Is not" only when the question says so: offered both, a small model takes "!=" for "is".
            ops = ["!="] if asks_negation(question) else ["="]
            shapes.append(_filter_item(list(text), ops, {"enum": found}))
            most += len(found)
        if compare is not None or numbers_named:
            bounds = numbers(question, leave_out=count)
            numeric = [c for c in named if self._column(c).numeric]
            columns = (list(numbers_named) if compare is None else numeric) or numeric or list(numbers_named) or \
                [c.name for c in self.columns if c.numeric]
            value: dict[str, Any] = {"enum": bounds} if bounds else {"type": "number"}
            if compare == ["between"]:
                value = {"type": "array", "items": value, "minItems": 2, "maxItems": 2}
            if columns:
                shapes.append(_filter_item(columns, compare or ["="], value))
                most += 1
        if not shapes:
            return None
        items = shapes[0] if len(shapes) == 1 else {"anyOf": shapes}
        return {"type": "array", "minItems": 1, "maxItems": max(1, most), "items": items}

    def mentioned_columns(self, question: str) -> list[str]:
        """Columns the question names: whole, or by the words that say what they hold ("body mass" for
        body_mass_g, "maximum temperature" for temp_max, "category" for categories)."""
        return [c.name for c in self.columns if names_column(question, c.name)]

    def which_column(self, question: str) -> str | None:
        """The column a question asks for a row or group by ("which island", "what year has")."""
        word = which_word(question)
        if word is None:
            return None
        for candidate in (word, word.split()[0]):
            found = [c.name for c in self.columns if names_column(candidate, c.name)]
            if found:
                return found[0]
        return None

    def mentioned_values(self, question: str, max_distinct: int = 200,
                         leave_out: int | None = None) -> dict[str, list[Any]]:
        """Values of the table that the question names, by column: text values of columns with few
        distinct ones, and numbers of numeric columns with very few (a year, a count of cylinders);
        `leave_out` is a number that counts rows ("the 5 largest"), not a value."""
        asked = question.lower()
        found: dict[str, list[Any]] = {}
        asked_numbers = {float(n) for n in numbers(question, leave_out)}
        for column in self.columns:
            name = quote_identifier(column.name)
            if column.numeric:
                if not asked_numbers:
                    continue
                rows = self.sql(f"SELECT DISTINCT {name} FROM t WHERE {name} IS NOT NULL LIMIT 51")
                hits = [_plain(r[0]) for r in rows if len(rows) <= 50 and isinstance(r[0], (int, float, Decimal))
                        and float(r[0]) in asked_numbers]
                if hits:
                    found[column.name] = hits
                continue
            rows = self.sql(f"SELECT DISTINCT CAST({name} AS VARCHAR) FROM t WHERE {name} IS NOT NULL "
                            f"LIMIT {max_distinct + 1}")
            if len(rows) > max_distinct:
                continue
            hits = [str(r[0]) for r in rows if len(str(r[0])) >= 2 and _names_value(asked, str(r[0]).lower())]
            if hits:
                found[column.name] = hits
        return found

    def examples(self, tool: str) -> str:
        """Example calls built from this table's own columns: a small model copies their shape."""
        text = next((c for c in self.columns if not c.numeric), None)
        number = next((c for c in self.columns if c.numeric), None)
        calls = [("How many rows are there?", {"operation": "count", "column": "*"})]
        if text is not None:
            first = self.sql(f"SELECT {quote_identifier(text.name)} FROM t WHERE {quote_identifier(text.name)} "
                             "IS NOT NULL LIMIT 1")
            value = str(first[0][0]) if first else "x"
            calls.append((f"How many rows are there for each {text.name}?",
                          {"operation": "count", "column": "*", "group_by": text.name}))
            calls.append((f"How many rows have {text.name} {value}?",
                          {"operation": "count", "column": "*",
                           "filters": [{"column": text.name, "op": "=", "value": value}]}))
        if number is not None:
            calls.append((f"What is the largest {number.name}?", {"operation": "max", "column": number.name}))
            if text is not None:
                calls.append((f"What is the average {number.name} for each {text.name}?",
                              {"operation": "mean", "column": number.name, "group_by": text.name}))
        lines = ["Examples of calls:"]
        lines += [f"{q} -> {json.dumps({'name': tool, 'arguments': args})}" for q, args in calls]
        return "\n".join(lines)

    # ----- running -----

    def query(self, request: dict[str, Any]) -> dict[str, Any]:
        """Compile a structured query to SQL, run it, and return the SQL and the rows (at most MAX_ROWS).

        A single value comes as `value`; whole rows (argmax, top...) with their `columns` and the column
        they are ordered `by`; groups and lists as `rows`.
        """
        sql, params = self.compile(request)
        rows = self.sql(sql, params)
        out: dict[str, Any]
        if request.get("operation") in ROW_OPERATIONS:
            by = self._column(request.get("column")).name
            out = {"columns": [c.name for c in self.columns], "by": by,
                   "rows": [list(map(_plain, r)) for r in rows[:MAX_ROWS]]}
            if request.get("label"):
                out["label"] = self._column(request["label"]).name
        elif len(rows) == 1 and len(rows[0]) == 1:
            out = {"value": _plain(rows[0][0])}  # the answer itself, first: a small model reads it best
        else:
            out = {"rows": [list(map(_plain, r)) for r in rows[:MAX_ROWS]]}
            if len(rows) > MAX_ROWS:
                out["note"] = f"only the first {MAX_ROWS} rows are shown"
        out["sql"] = _inline(sql, params)
        return out

    def compile(self, request: dict[str, Any]) -> tuple[str, list[Any]]:
        """One SELECT for a structured query; identifiers quoted, values bound."""
        operation = request.get("operation")
        if operation not in OPERATIONS:
            raise TableError(f"unknown operation {operation!r}", hint=f"one of {', '.join(OPERATIONS)}")
        column = request.get("column") or "*"
        target = "*" if column == "*" else quote_identifier(self._column(column).name)
        if column == "*" and operation not in ("count", "list"):
            raise TableError(f"{operation} needs a column", hint="name one of the table's columns")
        if operation in ("mean", "sum", "median", *ROW_OPERATIONS) and not self._column(column).numeric:
            raise TableError(f"{operation} of {column} ({self._column(column).type}) is not a number",
                             hint="pick a numeric column")
        params: list[Any] = []
        where = [self._condition(f, params) for f in request.get("filters") or []]
        limit = _limit(request.get("limit"))
        if operation in ROW_OPERATIONS:
            direction, one = ROW_OPERATIONS[operation]
            sql = f"SELECT * FROM t WHERE {' AND '.join([f'{target} IS NOT NULL', *where])}"
            return sql + f" ORDER BY {target} {direction} LIMIT {one or limit or DEFAULT_TOP}", params
        group = request.get("group_by")
        group_sql = quote_identifier(self._column(group).name) if group else None
        value = {
            "count": f"count({target})" if column != "*" else "count(*)",
            "count_distinct": f"count(DISTINCT {target})",
            "mean": f"avg({target})", "sum": f"sum({target})", "min": f"min({target})",
            "max": f"max({target})", "median": f"median({target})",
        }.get(operation)
        if operation == "list":
            select = target if group_sql is None else f"{group_sql}, {target}"
            sql = f"SELECT DISTINCT {select} FROM t"
        elif group_sql:
            sql = f"SELECT {group_sql}, {value} AS value FROM t"
        else:
            sql = f"SELECT {value} AS value FROM t"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if group_sql and operation != "list":
            direction = "ASC" if request.get("order") == "asc" else "DESC"
            # Ties go by name, so the same question always gets the same first group.
            sql += f" GROUP BY {group_sql} ORDER BY value {direction} NULLS LAST, {group_sql}"
        sql += f" LIMIT {min(limit, MAX_ROWS + 1) if limit else MAX_ROWS + 1}"
        return sql, params

    def sql(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement of ours under the time limit."""
        import duckdb

        with self._lock:
            timer = threading.Timer(TIMEOUT_SECONDS, self._con.interrupt)
            timer.start()
            try:
                return self._con.execute(sql, params or []).fetchall()
            except duckdb.InterruptException:
                raise TableError(f"the query ran past {TIMEOUT_SECONDS:.0f} s and was stopped",
                                 hint="ask a narrower question") from None
            except duckdb.Error as exc:
                raise TableError(f"the query failed: {_reason(exc)}",
                                 hint="check the columns and values") from None
            finally:
                timer.cancel()

    def close(self) -> None:
        """Close the DuckDB connection."""
        self._con.close()

    # ----- internals -----

    def _column(self, name: Any) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        for column in self.columns:  # a small model may change the case
            if isinstance(name, str) and column.name.lower() == name.lower():
                return column
        raise TableError(f"no column named {name!r}",
                         hint=f"columns: {', '.join(c.name for c in self.columns)}")

    def _condition(self, spec: Any, params: list[Any]) -> str:
        if not isinstance(spec, dict):
            raise TableError("a filter is an object with column, op and value")
        column = self._column(spec.get("column"))
        op = spec.get("op")
        if op not in FILTER_OPS:
            raise TableError(f"unknown filter operator {op!r}", hint=f"one of {' '.join(FILTER_OPS)}")
        value = spec.get("value")
        name = quote_identifier(column.name)
        if op == "between":
            if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, (int, float)) for v in value):
                raise TableError("between needs two numbers, [low, high]", hint='{"op": "between", "value": [1, 9]}')
            params.extend(sorted(value))
            return f"{name} BETWEEN ? AND ?"
        if isinstance(value, list):
            raise TableError(f"{op} compares with one value, not a list", hint="give one number or text")
        params.append(value)
        if op == "contains":
            return f"contains(lower(CAST({name} AS VARCHAR)), lower(CAST(? AS VARCHAR)))"
        if isinstance(value, str) and column.numeric:
            return f"{name} {op} TRY_CAST(? AS DOUBLE)"
        if not isinstance(value, str) and not column.numeric:
            return f"CAST({name} AS VARCHAR) {op} CAST(? AS VARCHAR)"
        if isinstance(value, str):
            # Text compares without regard to case: a model writes "adelie" for "Adelie".
            return f"lower(CAST({name} AS VARCHAR)) {op} lower(?)"
        return f"{name} {op} ?"


_SUBJECTS = {
    "count": "the number of rows", "count_distinct": "the number of distinct values of {column}",
    "mean": "the mean of {column}", "sum": "the total of {column}", "min": "the smallest {column}",
    "max": "the largest {column}", "median": "the median of {column}", "list": "the values of {column}",
    "argmax": "the row with the largest {column}", "argmin": "the row with the smallest {column}",
    "top": "the {limit} rows with the largest {column}", "bottom": "the {limit} rows with the smallest {column}",
}
_GROUP_SUBJECTS = {
    "count": "the number of rows", "count_distinct": "the number of distinct values of {column}",
    "mean": "the mean {column}", "sum": "the total {column}", "min": "the smallest {column}",
    "max": "the largest {column}", "median": "the median {column}",
}
_FILTER_WORDS = {"=": "is", "!=": "is not", "<": "is less than", "<=": "is at most", ">": "is more than",
                 ">=": "is at least", "contains": "contains", "between": "is between"}


def query_subject(request: dict[str, Any]) -> str:
    """What a structured query computed, in words ("the mean of body_mass_g where species is Gentoo"):
    the answer says it beside the result, so a reader sees which question the tool answered."""
    operation, column = request.get("operation"), request.get("column") or "*"
    limit, group = request.get("limit"), request.get("group_by")
    if group and operation in _GROUP_SUBJECTS:
        what = _GROUP_SUBJECTS[operation].format(column=column)
        if limit == 1:
            most = "highest" if operation != "count" else "most"
            least = "lowest" if operation != "count" else "fewest"
            what = (f"the {group} with the {least if request.get('order') == 'asc' else most} "
                    f"{what.removeprefix('the ').removeprefix('number of ')}")
        else:
            what = f"{what} for each {group}"
    else:
        what = _SUBJECTS.get(str(operation), "the result").format(column=column, limit=limit or DEFAULT_TOP)
    conditions = [f"{f.get('column')} {_FILTER_WORDS.get(f.get('op'), f.get('op'))} {_filter_value(f)}"
                  for f in request.get("filters") or [] if isinstance(f, dict)]
    return what + (" where " + " and ".join(conditions) if conditions else "")


def _filter_value(spec: dict[str, Any]) -> str:
    value = spec.get("value")
    if isinstance(value, list) and len(value) == 2:
        return f"{value[0]} and {value[1]}"
    return str(value)


def _limit(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_TOP:
        raise TableError(f"limit {value!r} is not a number of rows from 1 to {MAX_TOP}",
                         hint=f"give 1 to {MAX_TOP}")
    return value


def _filter_item(columns: list[str], ops: list[str], value: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": ["column", "op", "value"],
            "properties": {"column": {"enum": columns}, "op": {"enum": ops}, "value": value}}


def _names_value(asked: str, value: str) -> bool:
    """Whether `value` stands in the question as a word of its own, not inside a longer one.

    A search, not a regex per value: a column has up to 200 values, and each new pattern compiles."""
    start = asked.find(value)
    while start != -1:
        end = start + len(value)
        if not _in_word(asked[start - 1:start]) and not _in_word(asked[end:end + 1]):
            return True
        start = asked.find(value, start + 1)
    return False


def _in_word(char: str) -> bool:
    return bool(char) and (char.isalnum() or char == "_") and _CJK.match(char) is None


def _encoding(path: Path, reader: str) -> str:
    """The text encoding to read a CSV with, from its first bytes: UTF-16 when it starts with the
    little-endian byte-order mark, else UTF-8 (Latin-1 is tried if DuckDB finds it is not)."""
    if reader == "read_parquet":
        return "utf-8"
    with path.open("rb") as handle:
        head = handle.read(8192)
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):  # before UTF-16's: the same first two bytes
        raise TableError(f"{path.name} is UTF-32 text, which homellm does not read as a table",
                         hint="save it as UTF-8", param="table")
    if head.startswith(b"\xff\xfe") and reader == "read_csv_auto":  # Excel's "Unicode text"
        return "utf-16"
    if head.startswith((b"\xfe\xff", b"\xff\xfe")):
        raise TableError(f"{path.name} is UTF-16 text, which homellm reads only as a little-endian CSV",
                         hint="save it as UTF-8", param="table")
    if looks_binary(head):  # DuckDB would read it as a one-column CSV
        raise TableError(f"{path.name} is binary, not a text table",
                         hint="give a CSV, Parquet or JSON table; if it is text, save it as UTF-8", param="table")
    return "utf-8"


def _json_array_after_bom(path: Path, reader: str) -> bool:
    """Whether the file is a JSON array behind a UTF-8 byte-order mark (Windows Notepad writes one)."""
    if reader != "read_json_auto":
        return False
    with path.open("rb") as handle:
        head = handle.read(4096)
    return head.startswith(b"\xef\xbb\xbf") and head[3:].lstrip()[:1] == b"["


def _first_line_fields(path: Path) -> int:
    """The most fields the file's first line can have, whichever of , ; tab | separates them; quoted text
    is left out (in UTF-16 this counts a little high, which only matters past MAX_COLUMNS). A line ends
    at \n or \r: a file saved on an old Mac has no \n at all."""
    with path.open("rb") as handle:
        head = handle.read(_MAX_LINE_BYTES)
    line = re.split(rb"[\r\n]", re.sub(rb'"[^"]*"', b"", head), maxsplit=1)[0]
    return max(line.count(sep) for sep in (b",", b";", b"\t", b"|")) + 1


def _check_width(path: Path, columns: int) -> None:
    if columns > MAX_COLUMNS:
        raise TableError(f"{path.name} has {columns} columns; homellm reads tables of up to {MAX_COLUMNS}",
                         hint="keep the columns the questions need (cut -d, -f1-50 file.csv > smaller.csv)",
                         param="table")


def _open(real: str, reader: str, encoding: str, whole_sample: bool,
          json_array: bool = False) -> tuple[Any, list[tuple[Any, ...]], int, int]:
    """A DuckDB connection that reads one file, as view `t`, and nothing else: its columns, row count, and
    the lines at the top of a CSV that DuckDB leaves out (a title above the header, rows of another width).

    Counting every column reads the whole file in DuckDB (never in Python), so a bad line, a value that
    does not fit its column's type or a wrong encoding anywhere in it is found here rather than in the
    middle of a question.
    """
    import duckdb

    con = duckdb.connect(":memory:")
    timer = threading.Timer(OPEN_TIMEOUT_SECONDS, con.interrupt)
    timer.start()
    try:
        # DDL takes no bound parameters: the path goes in as a quoted SQL string.
        literal = "'" + real.replace("'", "''") + "'"
        con.execute(f"SET allowed_paths = [{literal}]")
        options = ", sample_size = -1" if whole_sample else ""
        skipped = 0
        if reader == "read_csv_auto":
            skipped = int(con.execute(f"SELECT SkipRows FROM sniff_csv({literal}{options}, encoding = '{encoding}')")
                          .fetchone()[0])
            # R and pandas write missing values as NA: read as NULL, so the column keeps its numeric type.
            options += f", nullstr = ['NA', 'N/A', 'NaN', ''], encoding = '{encoding}'"
        if json_array:  # after a byte-order mark, DuckDB takes an array for one value of a column "json"
            options += ", format = 'array'"
        con.execute(f"CREATE VIEW t AS SELECT * FROM {reader}({literal}{options})")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        described = con.execute("DESCRIBE t").fetchall()
        rows = int(con.execute("SELECT count(*), count(COLUMNS(*)) FROM t").fetchone()[0])
    except BaseException:
        timer.cancel()  # before the close: an interrupt of a closed connection raises in the timer's thread
        con.close()
        raise
    timer.cancel()
    return con, described, rows, skipped


def _unreadable(path: Path, exc: Exception) -> TableError:
    """DuckDB's refusal of a file, as one line that says why."""
    text = str(exc)
    if "not latin-1 encoded" in text:
        return TableError(f"{path.name} is neither UTF-8 nor Latin-1 text", param="table",
                          hint="save it as UTF-8 (from Windows-1252: iconv -f cp1252 -t utf-8)")
    if "not utf-8 encoded" in text.lower() or "invalid utf-8" in text.lower():
        return TableError(f"{path.name} is not UTF-8 text", hint="save it as UTF-8", param="table")
    if "error when sniffing file" in text.lower():  # DuckDB's first line names only the file
        return TableError(f"{path.name} cannot be read as a table: no one separator, quote and line end fit "
                          "all of its lines", param="table",
                          hint="save it as a CSV with one kind of line end and as many fields on every line")
    return TableError(f"{path.name} cannot be read as a table: {_reason(exc)}",
                      hint="check that it is a CSV, Parquet or JSON table", param="table")


def _reason(exc: Exception) -> str:
    """The first line of DuckDB's message; for a CSV error, the line number and the reason, which it
    puts after a copy of the offending line (the file's data, not repeated here)."""
    lines = [line.strip() for line in str(exc).splitlines()] or [""]
    reason = re.sub(r"^[A-Za-z ]+ Error: ", "", lines[0])
    where = re.search(r"CSV Error on Line: (\d+)", lines[0])
    if where:
        why = next((line for line in lines[2:] if line and not line.lower().startswith("possible solution")), "")
        reason = f"line {where.group(1)}: {why}" if why else f"line {where.group(1)}"
    return reason[:200]


def _short(value: Any, width: int = 40) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _plain(value: Any) -> Any:
    """JSON-friendly values: numbers rounded to 4 places, dates as text."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    return str(value)


def _inline(sql: str, params: list[Any]) -> str:
    """The SQL with its values shown in place, for the steps a user reads (never executed)."""
    for value in params:
        shown = repr(value) if isinstance(value, str) else str(value)
        sql = sql.replace("?", shown, 1)
    return sql
