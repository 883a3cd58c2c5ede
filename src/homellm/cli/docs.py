"""`homellm docs`: add, ls, rm, sync and search collections of local documents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from homellm.cli.options import JsonOption
from homellm.cli.output import ago, console, human_bytes, new_table, out
from homellm.cli.store import open_store
from homellm.config import Settings
from homellm.docs import DocsLibrary, IngestReport, open_library
from homellm.docs.library import Progress as ProgressCallback
from homellm.docs.search import SEARCH_MODES

docs_app = typer.Typer(help="Index local documents and search them (hybrid full-text and meaning).",
                       no_args_is_help=True, rich_markup_mode=None)

NameArgument = Annotated[str, typer.Argument(help="The collection's name.")]


def library() -> DocsLibrary:
    """The collections under HOMELLM_HOME."""
    return open_library(Settings.from_env().home, open_store())


@docs_app.command("add")
def add(
    name: NameArgument,
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to index.")],
    glob: Annotated[str | None, typer.Option(help="Only files whose name or relative path matches, e.g. '*.md'.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Make a collection from files and folders and index them."""
    docs = library()
    docs.check_add(name, paths)
    with console.status("loading the embedding model…"):
        docs.embedder()
    with _file_progress(f"indexing {name}") as progress:
        report = docs.add(name, paths, glob, progress)
    _print_report(name, report, as_json)


@docs_app.command("sync")
def sync(name: NameArgument, as_json: JsonOption = False) -> None:
    """Re-index changed files, add new ones and drop deleted ones (also completes an interrupted add)."""
    docs = library()
    docs.info(name)
    with console.status("loading the embedding model…"):
        docs.embedder()
    with _file_progress(f"syncing {name}") as progress:
        report = docs.sync(name, progress)
    _print_report(name, report, as_json)


@docs_app.command("ls")
def ls(as_json: JsonOption = False) -> None:
    """List the collections."""
    collections = library().list()
    if as_json:
        print(json.dumps([c.to_json() for c in collections], indent=2))
        return
    table = new_table()
    for column in ("NAME", "FILES", "CHUNKS", "SIZE", "STATE", "UPDATED", "ROOTS"):
        table.add_column(column, justify="right" if column in ("FILES", "CHUNKS", "SIZE") else "left")
    for c in collections:
        state = f"damaged ({c.damaged}): docs rm it" if c.damaged else \
            "ready" if c.complete else "interrupted: run docs sync"
        table.add_row(c.name, f"{c.files:,}", f"{c.chunks:,}", human_bytes(c.size_bytes), state,
                      ago(c.updated) if c.updated else "?", ", ".join(c.roots))
    out.print(table)


@docs_app.command("rm")
def rm(names: Annotated[list[str], typer.Argument(help="Collections to remove (your files stay).")]) -> None:
    """Remove collections' indexes; the documents themselves are not touched."""
    docs = library()
    for name in names:
        console.print(f"removed [bold]{docs.remove(name)}[/]", highlight=False)


@docs_app.command("search")
def search(
    name: NameArgument,
    query: Annotated[str, typer.Argument(help="What to look for, in your own words.")],
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="How many results.")] = 10,
    mode: Annotated[str, typer.Option(help=f"One of {', '.join(SEARCH_MODES)}.")] = "hybrid",
    as_json: JsonOption = False,
) -> None:
    """Search a collection: the best chunks with where they come from."""
    hits = library().search(name, query, k, mode)  # type: ignore[arg-type]
    if as_json:
        print(json.dumps([hit.to_json() for hit in hits], indent=2, ensure_ascii=False))
        return
    if not hits:
        console.print("no matches")
    for rank, hit in enumerate(hits, start=1):
        out.print(f"[bold][{rank}][/] {hit.where()}  [dim]{hit.score:.4f}[/]")
        snippet = " ".join(hit.text.split())
        out.print(f"    {snippet[:300]}{'…' if len(snippet) > 300 else ''}", markup=False)


@contextmanager
def _file_progress(label: str) -> Iterator[ProgressCallback]:
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), TextColumn("[dim]{task.fields[path]}"),
                        console=console, transient=True)
    with progress:
        task = progress.add_task(label, total=None, path="")

        def advance(done: int, total: int, path: str) -> None:
            progress.update(task, completed=done, total=total, path=Path(path).name if path else "")

        yield advance


def _print_report(name: str, report: IngestReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"collection": name, **report.to_json()}, indent=2))
        return
    for path, reason in report.skipped:
        console.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False, soft_wrap=True)
    for path, note in report.notes:
        console.print(f"[dim]note[/] {path}: {note}", highlight=False, soft_wrap=True)
    rate = f", {report.chunks / report.seconds:.0f} chunks/s" if report.chunks and report.seconds else ""
    console.print(f"{name}: {report.added} added, {report.changed} changed, {report.removed} removed, "
                  f"{report.unchanged} unchanged; {report.chunks} chunks in {report.seconds:.1f} s{rate}",
                  highlight=False)
