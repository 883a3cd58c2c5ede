"""`homellm worker`: lend this machine to a server that splits a model across workers."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from homellm.cli.output import console
from homellm.errors import RpcUnavailableError
from homellm.rpc.workers import DEFAULT_WORKER_PORT, Endpoint, worker_address


def worker(
    host: Annotated[str, typer.Option(help="IPv4 address to listen on (0.0.0.0: every interface); anything but loopback lets the network in.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = DEFAULT_WORKER_PORT,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads [default: every core].")] = None,
    cache: Annotated[Path | None, typer.Option(help="Keep received weights in this folder, so a restart loads faster.")] = None,
) -> None:
    """Lend this machine's memory and compute to `homellm serve --rpc` on another (llama.cpp's rpc-server).

    llama.cpp's RPC protocol has no authentication and no encryption: whoever reaches the port
    can run code on the worker's device and read what it holds. Bind a trusted network only.
    """
    from homellm.advice.doctor import bind_error
    from homellm.rpc.lend import lend, lent_device

    endpoint = Endpoint(worker_address(host), port)
    if error := bind_error(endpoint.host, port):
        raise RpcUnavailableError(f"cannot listen on {endpoint}: {error}",
                                  hint="another worker may use the port; pick another with --port")
    name, description, free, total = lent_device()
    if not ipaddress.IPv4Address(endpoint.host).is_loopback:
        console.print(f"[yellow]warning:[/] listening on {endpoint}: llama.cpp's RPC protocol has no "
                      "authentication; anyone who reaches this port can use this machine. Trusted networks only.",
                      highlight=False, soft_wrap=True)
    console.print(escape(f"homellm worker at {endpoint}: {name} ({description}), {free / 2**30:.1f} of "
                         f"{total / 2**30:.1f} GiB free; serve with `homellm serve --rpc {endpoint}`"),
                  highlight=False)
    lend(endpoint, threads, cache)
