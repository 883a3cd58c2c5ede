"""`homellm worker`, and the two halves of `homellm serve --rpc`: the server, and the process that holds the split model."""

from __future__ import annotations

import ipaddress
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from homellm.engine.overrides import TensorOverride
from homellm.errors import HomellmError, InvalidRequestError, RpcUnavailableError
from homellm.rpc.workers import (
    DEFAULT_WORKER_PORT,
    Endpoint,
    parse_endpoints,
    require_reachable,
    tensor_split,
    worker_address,
    worker_layers,
)
from homellm.scheduler import LoadPlan

if TYPE_CHECKING:
    from homellm.rpc.backend import SplitBackend

console = Console(stderr=True)
OUTPUT_HEAD = r"^(output|token_embd)\.weight$"  # token_embd: the head of a model with tied embeddings

RpcOption = Annotated[str | None, typer.Option(
    "--rpc", help="Split the model across llama.cpp RPC workers, HOST:PORT[,HOST:PORT...], each running "
                  "`homellm worker`. RPC has no authentication: trusted networks only.")]
RpcLayersOption = Annotated[int | None, typer.Option(
    "--rpc-layers", min=0, help="Layers to put on the RPC workers [default: their share of the free memory].")]
RpcTimeoutOption = Annotated[float, typer.Option(
    "--rpc-timeout", min=1.0, help="Seconds one decode step of a split model may take before its workers count as "
                                   "lost (one vanished without closing its connection).")]
RpcDirectOption = Annotated[str | None, typer.Option("--rpc-direct", hidden=True,
                                                     help="Load the model across these workers in this process.")]


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
    from homellm.doctor import bind_error
    from homellm.engine.llama import default_threads
    from homellm.rpc.ggml import main_device, serve_worker

    endpoint = Endpoint(worker_address(host), port)
    if error := bind_error(endpoint.host, port):
        raise RpcUnavailableError(f"cannot listen on {endpoint}: {error}",
                                  hint="another worker may use the port; pick another with --port")
    name, description, free, total = main_device()
    if not ipaddress.IPv4Address(endpoint.host).is_loopback:
        console.print(f"[yellow]warning:[/] listening on {endpoint}: llama.cpp's RPC protocol has no "
                      "authentication; anyone who reaches this port can use this machine. Trusted networks only.",
                      highlight=False, soft_wrap=True)
    console.print(escape(f"homellm worker at {endpoint}: {name} ({description}), {free / 2**30:.1f} of "
                         f"{total / 2**30:.1f} GiB free; serve with `homellm serve --rpc {endpoint}`"),
                  highlight=False)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    # The server loop runs in C and never returns to Python: let Ctrl-C and SIGTERM end the process as C would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    serve_worker(str(endpoint), threads or default_threads(), cache)


def check_split_request(rpc: str, cpu_moe: bool, n_cpu_moe: int | None, override_tensor: list[str] | None) -> list[Endpoint]:
    """The workers `serve --rpc` names, checked before anything loads."""
    from homellm.rpc.ggml import require_rpc

    endpoints = parse_endpoints(rpc)
    if cpu_moe or n_cpu_moe is not None or override_tensor:
        raise InvalidRequestError("--rpc places whole layers on the workers; it does not combine with "
                                  "--cpu-moe, --n-cpu-moe or --override-tensor",
                                  hint="leave those out, or serve without --rpc")
    require_rpc()
    require_reachable(endpoints)
    return endpoints


def split_process_args(model: str, ctx: int | None, threads: int | None, parallel: int, queue: int,
                       keep_alive: str, max_loaded: int, rpc_layers: int | None) -> list[str]:
    """The `homellm serve` options the split process is started with (address and workers come apart)."""
    args = ["--model", model, "--parallel", str(parallel), "--queue", str(queue), "--keep-alive", keep_alive,
            "--max-loaded", str(max_loaded)]
    for flag, value in (("--ctx", ctx), ("--threads", threads), ("--rpc-layers", rpc_layers)):
        if value is not None:
            args += [flag, str(value)]
    return args


def report_split_ready(split: SplitBackend, name: str) -> None:
    """Say when the split model has loaded, or why it did not (on a thread: the server is already up)."""
    start = time.monotonic()
    try:
        split.wait_ready()
    except HomellmError as exc:
        console.print(f"[red]error:[/] {escape(exc.one_line())}", highlight=False, soft_wrap=True)
        return
    console.print(f"{escape(name)} ready in {time.monotonic() - start:.1f} s, split across "
                  f"{', '.join(str(e) for e in split.endpoints)}", highlight=False)


def start_split_reporter(split: SplitBackend, name: str) -> None:
    """`report_split_ready` on a daemon thread."""
    threading.Thread(target=report_split_ready, args=(split, name), daemon=True).start()


def exit_with_parent() -> None:
    """End this process when the server that started it is gone, however it went (even SIGKILL)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def load_across_workers(rpc_direct: str, load_plan: LoadPlan, n_layers: int, local_free: int,
                        rpc_layers: int | None) -> tuple[LoadPlan, list[dict[str, Any]]]:
    """Make the workers llama.cpp devices of this process and the plan that puts layers on them.

    Returns the plan and the workers as /api/ps reports them. Only the process that `serve --rpc`
    starts calls this: a worker lost later aborts the process (llama.cpp's behaviour).
    """
    from homellm.rpc.ggml import add_worker

    endpoints = parse_endpoints(rpc_direct)
    require_reachable(endpoints)
    by_worker = [(endpoint, add_worker(str(endpoint))) for endpoint in endpoints]
    frees = [sum(d.free_bytes for d in devices) for _, devices in by_worker]
    layers = worker_layers(n_layers, local_free, frees, rpc_layers)
    shares = tensor_split([d.free_bytes for _, devices in by_worker for d in devices])
    # llama.cpp counts the output head as one more layer and would send it to the last worker with
    # the first layer offloaded; its matrix stays here, so a token's logits (vocabulary-sized) never
    # cross the network, only its activations (embedding-sized). `plan --worker` assumes the same.
    options = replace(load_plan.options, n_gpu_layers=layers + 1 if layers else 0, tensor_split=shares,
                      tensor_overrides=(TensorOverride(OUTPUT_HEAD),) if layers else ())
    counts = _apportion(layers, [sum(shares[i] for i in _indices(by_worker, w)) for w in range(len(by_worker))])
    workers = [{"endpoint": str(endpoint), "layers": count,
                "devices": [{"name": d.name, "description": d.description, "free_bytes": d.free_bytes,
                             "total_bytes": d.total_bytes} for d in devices]}
               for (endpoint, devices), count in zip(by_worker, counts)]
    return LoadPlan(options, load_plan.memory_bytes), workers


def _indices(by_worker: list[tuple[Endpoint, list[Any]]], worker: int) -> range:
    start = sum(len(devices) for _, devices in by_worker[:worker])
    return range(start, start + len(by_worker[worker][1]))


def _apportion(total: int, shares: list[float]) -> list[int]:
    """`total` split by `shares` into whole numbers that add up (largest remainder first)."""
    raw = [total * s / (sum(shares) or 1) for s in shares]
    counts = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)[: total - sum(counts)]:
        counts[i] += 1
    return counts

