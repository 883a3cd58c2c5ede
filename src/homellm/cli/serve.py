"""`homellm serve`: the API server, with the model given loaded at start (or split across RPC workers)."""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Callable
from typing import Annotated

import typer
from rich.markup import escape

from homellm import __version__
from homellm.cli.options import (
    DEFAULT_PARALLEL,
    CpuMoeOption,
    CtxOption,
    DraftOption,
    KvTypeKOption,
    KvTypeOption,
    KvTypeVOption,
    ModelOption,
    NCpuMoeOption,
    OverrideTensorOption,
    ReasoningBudgetOption,
    RpcDirectOption,
    RpcLayersOption,
    RpcOption,
    RpcTimeoutOption,
    SpecOption,
    ThreadsOption,
    kv_cache_type,
    reasoning_budget,
    speculation_mode,
    tensor_overrides,
)
from homellm.cli.output import console, print_placement, warn
from homellm.cli.store import open_store
from homellm.config import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    Settings,
    parse_keep_alive,
)
from homellm.errors import HomellmError, InvalidRequestError, PortInUseError
from homellm.hardware.detect import detect
from homellm.models.resolve import stored_model_ref
from homellm.rpc.workers import STALL_SECONDS
from homellm.scheduler import Placement, Scheduler, loadable_model
from homellm.scheduler.models import DEFAULT_MAX_LOADED, DEFAULT_MAX_QUEUE


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind [default: 127.0.0.1, or HOMELLM_HOST].")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port [default: 8435, or HOMELLM_PORT].")] = None,
    ollama_port: Annotated[int | None, typer.Option(
        min=1, max=65535, help="Also serve on this port, where Ollama's clients look by default (11434): Open WebUI, "
                               "Continue, Zed, VS Code Copilot and the ollama SDKs then find homellm unchanged. "
                               "Same address, key and checks as --port.")] = None,
    model: ModelOption = None,
    ctx: CtxOption = None,
    threads: ThreadsOption = None,
    api_key: Annotated[str | None, typer.Option(help="Require this key as 'Authorization: Bearer KEY' [default: HOMELLM_API_KEY].")] = None,
    allowed_host: Annotated[list[str] | None, typer.Option(help="Another Host name to accept (repeatable).")] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(help="Browser origin allowed by CORS (repeatable); off by default.")] = None,
    parallel: Annotated[int, typer.Option(min=1, max=64, help="Requests decoded together per model, each with its own --ctx.")] = DEFAULT_PARALLEL,
    queue: Annotated[int, typer.Option(min=0, help="Requests that may wait for a slot per model; past it the server answers 503.")] = DEFAULT_MAX_QUEUE,
    keep_alive: Annotated[str, typer.Option(help="How long a model loaded on request stays loaded when idle: 5m, 1h, 0, -1 (forever). The --model one stays loaded.")] = "5m",
    max_loaded: Annotated[int, typer.Option(min=1, help="Models loaded at once at most.")] = DEFAULT_MAX_LOADED,
    idle_timeout: Annotated[float, typer.Option(
        min=0.1, help="Seconds a connection with no request in progress stays open (HTTP keep-alive).")
    ] = DEFAULT_IDLE_TIMEOUT,
    header_timeout: Annotated[float, typer.Option(
        min=0.1, help="Seconds from a request's first byte to the end of its headers; past it 408.")
    ] = DEFAULT_HEADER_TIMEOUT,
    body_timeout: Annotated[float, typer.Option(
        min=0.1, help="Seconds from the end of a request's headers to the end of its body; past it 408.")
    ] = DEFAULT_BODY_TIMEOUT,
    max_connections: Annotated[int, typer.Option(
        min=1, help="Connections open at once. Past it a new one replaces an idle one, or one slow to send its "
                    "headers; if there is none it is answered 503 with Retry-After.")] = DEFAULT_MAX_CONNECTIONS,
    cpu_moe: CpuMoeOption = False,
    n_cpu_moe: NCpuMoeOption = None,
    override_tensor: OverrideTensorOption = None,
    kv_type: KvTypeOption = None,
    kv_type_k: KvTypeKOption = None,
    kv_type_v: KvTypeVOption = None,
    spec: SpecOption = "off",
    draft: DraftOption = None,
    reasoning_budget_tokens: ReasoningBudgetOption = None,
    rpc: RpcOption = None,
    rpc_layers: RpcLayersOption = None,
    rpc_timeout: RpcTimeoutOption = STALL_SECONDS,
    rpc_direct: RpcDirectOption = None,
) -> None:
    """Serve a model behind OpenAI's API (/v1/...), Anthropic's Messages API (/v1/messages) and Ollama's (/api/...), with /homellm/ps and /metrics."""
    import uvicorn

    from homellm.rpc import split as split_process
    from homellm.rpc.backend import SplitBackend
    from homellm.server.app import ServerOptions, create_app
    from homellm.server.connections import (
        ConnectionLimits,
        fit_open_files,
        http_protocol,
    )
    from homellm.server.security import check_bind

    settings = Settings.from_env()
    host = host or settings.host
    port = port or settings.port
    api_key = api_key or settings.api_key
    check_bind(host, api_key)
    kv_cache = kv_cache_type(kv_type, kv_type_k, kv_type_v)
    thinking_budget = reasoning_budget(reasoning_budget_tokens)
    speculation = speculation_mode(spec, draft)
    if draft is not None and (rpc or rpc_direct):
        raise InvalidRequestError("--draft is not supported with --rpc yet: the draft model would load on this "
                                  "machine beside a split target", hint="use --spec ngram, or leave out --rpc")
    # Bound now, before any model loads, so a taken port is said at once; served once the app is built.
    sockets = _listen(host, port, "--port", "another server may use the port; pick another with --port")
    if ollama_port is not None and ollama_port != port:
        sockets += _listen(host, ollama_port, "--ollama-port",
                           "Ollama itself may be running there: stop it (or its service), or pick another "
                           "--ollama-port")
    idle_seconds = parse_keep_alive(keep_alive, "--keep-alive")
    fitting = fit_open_files(max_connections)
    if fitting < max_connections:
        warn(f"--max-connections {max_connections} is more than this process may open files for; serving "
             f"{fitting} at once (raise the hard limit, `ulimit -Hn`, for more)")
    limits = ConnectionLimits(idle_timeout, header_timeout, body_timeout, fitting)
    endpoints = split_process.check_split_request(rpc, cpu_moe, n_cpu_moe, override_tensor) if rpc else None
    overrides = tensor_overrides(cpu_moe, n_cpu_moe, override_tensor)
    store = open_store()
    ref = loadable_model(model, store)
    hardware = detect(probe_seconds=0.1).hardware
    placement = Placement(store, hardware, threads, parallel, warn=warn, kv_type=kv_cache, speculation=speculation)
    placement.check_speculation(ref)
    options = ServerOptions(host=host, api_key=api_key, allowed_hosts=tuple(allowed_host or ()),
                            cors_origins=tuple(cors_origin or ()))
    split, workers = None, None
    if endpoints is not None:  # this process serves; the split process it starts loads the model
        args = split_process.split_process_args(model or ref.name, ctx, threads, parallel, queue, keep_alive,
                                                max_loaded, rpc_layers, kv_cache, speculation,
                                                reasoning_budget=thinking_budget)
        split = SplitBackend(endpoints, args, rpc, stall_seconds=rpc_timeout)
    elif rpc_direct is not None:
        split_process.exit_with_parent()
        load_plan, workers = split_process.load_across_workers(
            rpc_direct, placement.plan_split(ref, ctx), placement.layers(ref),
            sum(d.available_bytes for d in hardware.devices if d.kind == "cpu"), rpc_layers)
    else:
        load_plan = placement.plan(ref, ctx, overrides)
        if draft is not None:
            load_plan = placement.with_draft(ref, load_plan, loadable_model(draft, store))
    shown = f"[{host}]" if ":" in host else host
    if rpc_direct is None:  # the split process is an internal one: the server that started it speaks
        across = f" split across {escape(rpc)}" if rpc else ""
        ollama = f"; Ollama's API also at http://{shown}:{ollama_port}" if ollama_port not in (None, port) else ""
        console.print(f"homellm {__version__}: serving [bold]{escape(ref.name)}[/]{across} at http://{shown}:{port}/v1"
                      f"{' (API key required)' if api_key else ''}; chat page at http://{shown}:{port}/{ollama}",
                      highlight=False)
    # Printed before loading starts: llama-cpp-python silences stderr while it loads.
    # Clients name stored models only, never paths: a request must not load an arbitrary file.
    # Models loaded later on request are planned then, each for itself, and all of them
    # together stay within the memory this machine had free when the server started.
    budget = sum(device.available_bytes for device in hardware.devices)
    scheduler = Scheduler(resolve=lambda name: stored_model_ref(store, name), plan_for=placement.plan,
                          memory_budget=budget, keep_alive=idle_seconds or 0.0, max_queue=queue,
                          max_loaded=max_loaded, reasoning_budget=thinking_budget)
    if split is not None:
        split.start()
        where = f", split across {', '.join(str(e) for e in split.endpoints)}"
        threading.Thread(target=_report_ready, args=(ref.name, split.wait_ready, where), daemon=True).start()
    else:
        stored = not (model and model.lower().endswith(".gguf"))
        runner = scheduler.add(ref, load_plan.options, load_plan.memory_bytes, reloadable=stored, draft=load_plan.draft)
        if rpc_direct is None:  # the split process's load is reported by the server that started it
            threading.Thread(target=_report_ready, daemon=True,
                             args=(ref.name, runner.wait_loaded, "", lambda: print_placement(runner.status()))).start()
    try:
        config = uvicorn.Config(create_app(scheduler, options, store, split=split, workers=workers),
                                log_level="warning", timeout_graceful_shutdown=3,
                                # Idle and header timeouts and the connection limit live in the protocol;
                                # uvicorn's own keep-alive timer agrees with them. No route speaks websocket.
                                http=http_protocol(limits), ws="none", timeout_keep_alive=limits.idle_timeout,
                                h11_max_incomplete_event_size=limits.max_header_bytes)
        server = uvicorn.Server(config)
        try:
            server.run(sockets=sockets)  # one server, one app, every port
        except KeyboardInterrupt:
            pass
    finally:
        for sock in sockets:
            sock.close()
        scheduler.close()
        if split is not None:
            split.close()


def _listen(host: str, port: int, option: str, hint: str) -> list[socket.socket]:
    """Sockets bound to every address `host` names on `port`, as asyncio's create_server binds them
    (`localhost` is 127.0.0.1 and ::1); a taken port is a one-line error naming it and its option."""
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                                                  flags=socket.AI_PASSIVE):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL and family == socket.AF_INET6:
                    sockets.pop().close()  # IPv6 is off here; asyncio skips it too
                    continue
                raise
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise PortInUseError(f"cannot listen on {host}:{port} ({option}): {exc.strerror or exc}", hint=hint) from None
    if not sockets:
        raise PortInUseError(f"cannot listen on {host}:{port} ({option}): the address names no interface here",
                           hint="bind 127.0.0.1, or an address of this machine")
    return sockets


def _report_ready(name: str, wait: Callable[[], object], where: str = "",
                  then: Callable[[], None] | None = None) -> None:
    """Say when a model has loaded, or why it did not (on a thread: the server is already up)."""
    start = time.monotonic()
    try:
        wait()
    except HomellmError as exc:
        console.print(f"[red]error:[/] {escape(exc.one_line())}", highlight=False, soft_wrap=True)
        return
    console.print(escape(f"{name} ready in {time.monotonic() - start:.1f} s{where}"), highlight=False)
    if then is not None:
        then()
