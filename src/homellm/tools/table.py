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

MAX_ROWS = 50
TIMEOUT_SECONDS = 10.0
SAMPLE_ROWS = 3
OPERATIONS = ("count", "count_distinct", "mean", "sum", "min", "max", "median", "list")
FILTER_OPS = ("=", "!=", "<", "<=", ">", ">=", "contains")
_NUMERIC_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                            "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "REAL", "NUMERIC"})
_READERS = {".csv": "read_csv_auto", ".tsv": "read_csv_auto", ".txt": "read_csv_auto",
            ".parquet": "read_parquet", ".json": "read_json_auto", ".jsonl": "read_json_auto",
            ".ndjson": "read_json_auto"}


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
        import duckdb

        self.path = Path(path)
        self.name = self.path.stem
        reader = _READERS.get(self.path.suffix.lower())
        if reader is None:
            raise TableError(f"{self.path.name} is not a table file homellm reads",
                             hint="give a .csv, .tsv, .parquet, .json or .jsonl file", param="table")
        if not self.path.is_file():
            raise TableError(f"{self.path} does not exist", hint="check the path", param="table")
        if self.path.stat().st_size == 0:
            raise TableError(f"{self.path.name} is empty, not a table", param="table")
        if reader != "read_parquet":
            with self.path.open("rb") as handle:
                if looks_binary(handle.read(8192)):  # DuckDB would read it as a one-column CSV
                    raise TableError(f"{self.path.name} is binary, not a text table", param="table")
        real = str(self.path.resolve())
        self._lock = threading.Lock()
        self._con = duckdb.connect(":memory:")
        try:
            # DDL takes no bound parameters: the path goes in as a quoted SQL string.
            literal = "'" + real.replace("'", "''") + "'"
            self._con.execute(f"SET allowed_paths = [{literal}]")
            # R and pandas write missing values as NA: read as NULL, so the column keeps its numeric type.
            options = ", nullstr = ['NA', 'N/A', 'NaN', '']" if reader == "read_csv_auto" else ""
            self._con.execute(f"CREATE VIEW t AS SELECT * FROM {reader}({literal}{options})")
            self._con.execute("SET enable_external_access = false")
            self._con.execute("SET lock_configuration = true")
            described = self._con.execute("DESCRIBE t").fetchall()
            self.rows = int(self._con.execute("SELECT count(*) FROM t").fetchone()[0])
        except duckdb.Error as exc:
            self._con.close()
            raise TableError(f"{self.path.name} cannot be read as a table: {str(exc).splitlines()[0]}",
                             hint="check that it is a CSV, Parquet or JSON table", param="table") from None
        self.columns = [Column(str(row[0]), str(row[1])) for row in described]
        if not self.columns:
            raise TableError(f"{self.path.name} has no columns", param="table")

    # ----- what the model is told -----

    def describe(self) -> str:
        """Columns, types, row count and a few rows, for the prompt."""
        sample = self.sql("SELECT * FROM t LIMIT ?", [SAMPLE_ROWS])
        lines = [f"Table {self.name} ({self.path.name}): {self.rows} rows.", "Columns:"]
        lines += [f"- {c.name} ({c.type})" for c in self.columns]
        lines.append(f"First {len(sample)} rows:")
        lines += [", ".join(f"{c.name}={_short(v)}" for c, v in zip(self.columns, row)) for row in sample]
        return "\n".join(lines)

    def query_schema(self, question: str | None = None) -> dict[str, Any]:
        """The JSON schema of a structured query over this table: columns come from an enum of the real ones.

        Given the question, the choices narrow to what it mentions: its columns, and filters only on
        the table's values it names (a 135M model offered every column fills filters with noise).
        """
        names = [c.name for c in self.columns]
        mentioned = self.mentioned_columns(question) if question else []
        values = self.mentioned_values(question) if question else {}
        columns = mentioned or names
        properties: dict[str, Any] = {"operation": {"enum": list(OPERATIONS)}, "column": {"enum": ["*", *columns]}}
        if question is None or _asks_per_group(question):
            groups = [c for c in columns if not self._column(c).numeric] or names
            properties["group_by"] = {"anyOf": [{"enum": groups}, {"type": "null"}]}
        if question is None or values:
            filter_columns = list(values) or names
            filter_values: dict[str, Any] = {"enum": sorted({v for vs in values.values() for v in vs}, key=str)} \
                if values \
                else {"anyOf": [{"type": "number"}, {"type": "string"}]}
            most = max(1, len({v for vs in values.values() for v in vs})) if values else 2
            properties["filters"] = {"type": "array", "maxItems": most, "items": {
                "type": "object", "additionalProperties": False, "required": ["column", "op", "value"],
                "properties": {"column": {"enum": filter_columns}, "op": {"enum": list(FILTER_OPS)},
                               "value": filter_values}}}
        return {"type": "object", "additionalProperties": False, "required": ["operation", "column"],
                "properties": properties}

    def mentioned_columns(self, question: str) -> list[str]:
        """Columns whose name, or a word of it, the question uses ("body mass" for body_mass_g)."""
        words = set(_words(question))
        found = []
        for column in self.columns:
            parts = [p for p in _words(column.name) if len(p) >= 3]
            if column.name.lower() in question.lower() or (parts and all(_near(p, words) for p in parts[:2])):
                found.append(column.name)
        return found

    def mentioned_values(self, question: str, max_distinct: int = 200) -> dict[str, list[Any]]:
        """Values of the table that the question names, by column: text values of columns with few
        distinct ones, and numbers of numeric columns with very few (a year, a count of cylinders)."""
        asked = question.lower()
        found: dict[str, list[Any]] = {}
        asked_numbers = {float(n) for n in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", asked)}
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
            hits = [str(r[0]) for r in rows if len(str(r[0])) >= 2 and re.search(
                r"(?<!\w)" + re.escape(str(r[0]).lower()) + r"(?!\w)", asked)]
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
        """Compile a structured query to SQL, run it, and return the SQL and the rows (at most MAX_ROWS)."""
        sql, params = self.compile(request)
        rows = self.sql(sql, params)
        out: dict[str, Any]
        if len(rows) == 1 and len(rows[0]) == 1:
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
        if operation in ("mean", "sum", "median") and not self._column(column).numeric:
            raise TableError(f"{operation} of {column} ({self._column(column).type}) is not a number",
                             hint="pick a numeric column")
        params: list[Any] = []
        where = [self._condition(f, params) for f in request.get("filters") or []]
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
            sql += f" GROUP BY {group_sql} ORDER BY value DESC"
        sql += f" LIMIT {MAX_ROWS + 1}"
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
                raise TableError(f"the query failed: {str(exc).splitlines()[0]}",
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
        params.append(value)
        name = quote_identifier(column.name)
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


def _words(text: str) -> list[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)  # petalLength -> petal Length
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def _near(part: str, words: set[str]) -> bool:
    """A word of a column's name in the question, allowing a plural or a shared stem ("islands", "flipper")."""
    return any(w == part or w.rstrip("s") == part.rstrip("s") or (len(part) >= 5 and w.startswith(part[:5]))
               for w in words)


def _asks_per_group(question: str) -> bool:
    return bool(re.search(r"\b(each|per|by|every|group|which \w+ has|breakdown)\b", question.lower()))


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
