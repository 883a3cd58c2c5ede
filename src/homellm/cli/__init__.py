"""The `homellm` command: one module per command family, registered here in the order `--help` lists them."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from homellm import __version__
from homellm.cli import (
    bench,
    chat,
    docs,
    plan,
    ps,
    quant,
    serve,
    store,
    upstream,
    worker,
)
from homellm.cli.output import console
from homellm.errors import HomellmError

app = typer.Typer(
    help="Run language models on the hardware you own, behind an OpenAI-compatible API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts say "[default: ...]"; as Rich markup those words would vanish.
    rich_markup_mode=None,
)


def main() -> None:
    """Entry point: errors print one line with a hint and exit non-zero."""
    try:
        app()
    except HomellmError as exc:
        console.print(f"[red]error:[/] {escape(exc.one_line())}", highlight=False, soft_wrap=True, emoji=False)
        sys.exit(1)


def _version(value: bool) -> None:
    if value:
        print(f"homellm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """homellm: serve, run and chat with local models."""


app.command("serve")(serve.serve)
app.command("run")(chat.run)
app.command("chat")(chat.chat)
app.command("ask")(chat.ask)
app.command("ls")(store.ls)
app.command("show")(store.show)
app.command("import")(store.import_)
app.command("pull")(store.pull)
app.command("rm")(store.rm)
app.command("cp")(store.cp)
app.command("hw")(plan.hw)
app.command("plan")(plan.plan)
app.command("doctor")(plan.doctor)
app.command("cost")(plan.cost)
app.command("bench")(bench.bench)
app.command("ps")(ps.ps)
app.command("quantize")(quant.quantize)
app.command("eval")(quant.evaluate_command)
app.add_typer(quant.quant_app, name="quant")
app.add_typer(docs.docs_app, name="docs")
app.add_typer(upstream.upstream_app, name="upstream")
app.command("worker")(worker.worker)
