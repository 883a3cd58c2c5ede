"""`homellm upstream`: put OpenAI-compatible servers behind this homellm's API."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from homellm.cli.options import JsonOption
from homellm.cli.output import console, new_table, out
from homellm.config import Settings
from homellm.upstreams.registry import UpstreamRegistry

upstream_app = typer.Typer(help="OpenAI-compatible servers (vLLM, SGLang, llama-server, another homellm) "
                                "whose models homellm serves as NAME/MODEL.", no_args_is_help=True, rich_markup_mode=None)


def registry() -> UpstreamRegistry:
    """The upstreams of HOMELLM_HOME."""
    return UpstreamRegistry(Settings.from_env().home)


@upstream_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The name its models get as a prefix: NAME/MODEL.")],
    url: Annotated[str, typer.Argument(help="Its OpenAI base URL, e.g. http://192.168.1.20:8000/v1.")],
    api_key_env: Annotated[str | None, typer.Option(
        "--api-key-env", help="The environment variable holding its key (the key itself is never stored).")] = None,
    models: Annotated[str | None, typer.Option(help="Only these of its models, comma-separated.")] = None,
) -> None:
    """Add an upstream; adding a second URL under the same name makes it a replica."""
    entry = registry().add(name, url, api_key_env, models.split(",") if models else None)
    console.print(f"added [bold]{entry.name}[/] at {entry.url}; its models are served as {entry.name}/MODEL "
                  "(a running server picks this up with its next request)", highlight=False)


@upstream_app.command("ls")
def ls(as_json: JsonOption = False) -> None:
    """List the upstreams and their replicas."""
    entries = registry().list()
    if as_json:
        print(json.dumps([{"name": e.name, "url": e.url, "api_key_env": e.api_key_env,
                           "models": list(e.models) if e.models is not None else None} for e in entries], indent=2))
        return
    table = new_table()
    for column in ("NAME", "URL", "KEY FROM", "MODELS"):
        table.add_column(column)
    for e in entries:
        table.add_row(e.name, e.url, e.api_key_env or "-", ", ".join(e.models) if e.models else "all")
    out.print(table)


@upstream_app.command("rm")
def rm(name: Annotated[str, typer.Argument(help="The upstream.")],
       url: Annotated[str | None, typer.Option(help="Only the replica at this URL.")] = None) -> None:
    """Remove an upstream (or one of its replicas)."""
    for entry in registry().remove(name, url):
        console.print(f"removed [bold]{entry.name}[/] at {entry.url}", highlight=False)
