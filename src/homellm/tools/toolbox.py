"""The built-in tools for `homellm ask`: tables, JSON files and document collections, made into loop tools."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from homellm.tools.json_explore import JsonFile
from homellm.tools.loop import ToolFunction, tool_name
from homellm.tools.table import Table, query_subject

if TYPE_CHECKING:
    from homellm.docs import DocsLibrary

DOCS_HITS = 4


class Toolbox:
    """Opened tables and JSON files (closed together), the tools over them, and what the model is told up front."""

    def __init__(self, tables: Sequence[Path] = (), json_files: Sequence[Path] = (),
                 docs: tuple[DocsLibrary, str] | None = None) -> None:
        self.tables = [Table(path) for path in tables]
        try:
            self.json_files = [JsonFile(path) for path in json_files]
        except BaseException:
            self.close()
            raise
        self.docs = docs

    def tools(self, question: str | None = None) -> list[ToolFunction]:
        """One tool per table and JSON file, and docs_search over a collection; with the question, the
        tables' query schemas narrow to the columns and values it mentions."""
        many_tables, many_json = len(self.tables) > 1, len(self.json_files) > 1
        tools = [ToolFunction(tool_name("table_query", t.name, many_tables),
                              f"Answer a question about the table {t.name} ({t.rows} rows): an operation on a "
                              "column, optional filters, optional group_by.", t.query_schema(question), t.query,
                              query_subject)
                 for t in self.tables]
        tools += [ToolFunction(tool_name("json_explore", j.name, many_json),
                               f"Look inside the JSON file {j.path.name}: give a path such as items[0].name, "
                               "or an empty path for the top.", j.schema(question), _explorer(j),
                               lambda args: f"the value at {args.get('path') or 'the top'}",
                               j.follow(question) if question is not None else None)
                  for j in self.json_files]
        if self.docs is not None:
            library, collection = self.docs
            tools.append(ToolFunction(
                "docs_search", f"Search the document collection {collection} for passages.",
                {"type": "object", "additionalProperties": False, "required": ["query"],
                 "properties": {"query": {"type": "string", "maxLength": 200}}},
                lambda args: [{"source": hit.where(), "text": hit.text}
                              for hit in library.search(collection, str(args.get("query") or " "), DOCS_HITS)]))
        return tools

    def context(self) -> str:
        """The tables' schemas and the JSON files' tops, given to the model before the question."""
        many = len(self.tables) > 1
        parts = [f"{table.describe()}\n{table.examples(tool_name('table_query', table.name, many))}"
                 for table in self.tables]
        for doc in self.json_files:
            top = doc.explore("")
            parts.append(f"JSON file {doc.path.name}: {top['type']}"
                         + (f" with keys {', '.join(top['keys'])}" if "keys" in top else "")
                         + (f" of {top['length']} items" if top["type"] == "array" else ""))
        return "\n\n".join(parts)

    def close(self) -> None:
        """Close the tables' DuckDB connections."""
        for table in self.tables:
            table.close()


def _explorer(doc: JsonFile) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def explore(args: dict[str, Any]) -> dict[str, Any]:
        return doc.explore(str(args.get("path") or ""))

    return explore
