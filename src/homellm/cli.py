"""The `homellm` command: serve, run, chat."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from homellm import (
    __version__,
    cli_bench,
    cli_docs,
    cli_plan,
    cli_ps,
    cli_quant,
    cli_rpc,
    cli_store,
    cli_upstream,
)
from homellm.advisor import fit_for_serving
from homellm.cli_overrides import (
    CpuMoeOption,
    NCpuMoeOption,
    OverrideTensorOption,
    tensor_overrides,
)
from homellm.config import DEFAULT_CTX, Settings, parse_keep_alive
from homellm.docs import DocsLibrary
from homellm.docs.answer import Grounding, sources_footer
from homellm.engine.llama import EngineOptions, LlamaEngine
from homellm.engine.overrides import TensorOverride
from homellm.engine.overrides import n_cpu_moe as n_cpu_moe_overrides
from homellm.engine.probe import probe_model_file
from homellm.errors import DoesNotFitError, HomellmError
from homellm.generation import Failed, Finished, SamplingParams, TextDelta
from homellm.hardware.detect import detect
from homellm.hardware.types import Hardware
from homellm.models.builtin import BUILTIN_NAME
from homellm.models.resolve import ModelRef, facts_of, resolve_model, stored_model_ref
from homellm.models.shape import shape_from_facts
from homellm.models.store import Store
from homellm.rpc.workers import STALL_SECONDS
from homellm.scheduler import LoadPlan, ModelRunner, Scheduler
from homellm.scheduler.models import DEFAULT_MAX_LOADED, DEFAULT_MAX_QUEUE
from homellm.scheduler.repetition import MAX_REPEATS, check_repeats
from homellm.tools.loop import run_loop, scheduler_chat
from homellm.tools.toolbox import Toolbox

app = typer.Typer(
    help="Run language models on the hardware you own, behind an OpenAI-compatible API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts say "[default: ...]"; as Rich markup those words would vanish.
    rich_markup_mode=None,
)
console = Console(stderr=True)

ModelOption = Annotated[str | None, typer.Option("--model", "-m", help=f"Stored model name or .gguf path [default: {BUILTIN_NAME}].")]
CtxOption = Annotated[int | None, typer.Option(
    "--ctx", min=16, help=f"Context length in tokens [default: {DEFAULT_CTX}, less when the model was trained "
                          "on less or memory is short]; refused when the planner says it does not fit.")]
ThreadsOption = Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads [default: every core].")]
DocsOption = Annotated[str | None, typer.Option("--docs", help="Answer from this document collection (homellm docs add).")]
TemperatureOption = Annotated[float | None, typer.Option(
    min=0.0, max=2.0, help="Sampling temperature; 0 always picks the most likely token "
                           "[default: the model's, see `homellm show`].")]
AnswerCapOption = Annotated[int, typer.Option(
    "--max-tokens", min=0, help="Stop an answer after this many tokens; 0: no cap.")]
LoopGuardOption = Annotated[int, typer.Option(
    "--loop-guard", min=0, max=MAX_REPEATS,
    help="Stop an answer that repeats one span of tokens this many times in a row; 0: never.")]
RepeatPenaltyOption = Annotated[float | None, typer.Option(
    "--repeat-penalty", min=0.0, help="Penalty on tokens the answer said recently; 1 turns it off "
                                      "[default: the model's, see `homellm show`].")]
DEFAULT_ANSWER_TOKENS = 1024
DEFAULT_LOOP_GUARD = 8
DEFAULT_PARALLEL = 4


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


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind [default: 127.0.0.1, or HOMELLM_HOST].")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port [default: 8435, or HOMELLM_PORT].")] = None,
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
    cpu_moe: CpuMoeOption = False,
    n_cpu_moe: NCpuMoeOption = None,
    override_tensor: OverrideTensorOption = None,
    rpc: cli_rpc.RpcOption = None,
    rpc_layers: cli_rpc.RpcLayersOption = None,
    rpc_timeout: cli_rpc.RpcTimeoutOption = STALL_SECONDS,
    rpc_direct: cli_rpc.RpcDirectOption = None,
) -> None:
    """Serve a model behind an OpenAI-compatible API (/v1/chat/completions, /v1/completions), /api/ps and /metrics."""
    import uvicorn

    from homellm.rpc.backend import SplitBackend
    from homellm.server.app import ServerOptions, create_app
    from homellm.server.security import check_bind

    settings = Settings.from_env()
    host = host or settings.host
    port = port or settings.port
    api_key = api_key or settings.api_key
    check_bind(host, api_key)
    _check_port_free(host, port)
    idle_seconds = parse_keep_alive(keep_alive, "--keep-alive")
    endpoints = cli_rpc.check_split_request(rpc, cpu_moe, n_cpu_moe, override_tensor) if rpc else None
    overrides = tensor_overrides(cpu_moe, n_cpu_moe, override_tensor)
    store = cli_store.open_store()
    ref = _resolve(model, store)
    hardware = detect(probe_seconds=0.1).hardware
    options = ServerOptions(host=host, api_key=api_key, allowed_hosts=tuple(allowed_host or ()),
                            cors_origins=tuple(cors_origin or ()))
    split, workers = None, None
    if endpoints is not None:  # this process serves; the split process it starts loads the model
        split = SplitBackend(endpoints, cli_rpc.split_process_args(model or ref.name, ctx, threads, parallel, queue,
                                                                  keep_alive, max_loaded, rpc_layers), rpc,
                             stall_seconds=rpc_timeout)
    elif rpc_direct is not None:
        cli_rpc.exit_with_parent()
        load_plan, workers = cli_rpc.load_across_workers(
            rpc_direct, _split_base_plan(ref, store, hardware, ctx, threads, parallel), _layers_of(ref, store),
            sum(d.available_bytes for d in hardware.devices if d.kind == "cpu"), rpc_layers)
    else:
        load_plan = _load_plan(ref, store, hardware, ctx, threads, parallel, overrides)
    shown = f"[{host}]" if ":" in host else host
    if rpc_direct is None:  # the split process is an internal one: the server that started it speaks
        across = f" split across {escape(rpc)}" if rpc else ""
        console.print(f"homellm {__version__}: serving [bold]{escape(ref.name)}[/]{across} at http://{shown}:{port}/v1"
                      f"{' (API key required)' if api_key else ''}; chat page at http://{shown}:{port}/",
                      highlight=False)
    # Printed before loading starts: llama-cpp-python silences stderr while it loads.
    # Clients name stored models only, never paths: a request must not load an arbitrary file.
    # Models loaded later on request are planned then, each for itself, and all of them
    # together stay within the memory this machine had free when the server started.
    budget = sum(device.available_bytes for device in hardware.devices)
    scheduler = Scheduler(resolve=lambda name: stored_model_ref(store, name),
                          plan_for=lambda other: _load_plan(other, store, hardware, None, threads, parallel),
                          memory_budget=budget, keep_alive=idle_seconds or 0.0, max_queue=queue,
                          max_loaded=max_loaded)
    if split is not None:
        split.start()
        cli_rpc.start_split_reporter(split, ref.name)
    else:
        stored = not (model and model.lower().endswith(".gguf"))
        runner = scheduler.add(ref, load_plan.options, load_plan.memory_bytes, reloadable=stored)
        if rpc_direct is None:  # the split process's load is reported by the server that started it
            threading.Thread(target=_report_load, args=(runner,), daemon=True).start()
    try:
        uvicorn.run(create_app(scheduler, options, store, split=split, workers=workers), host=host.strip("[]"),
                    port=port, log_level="warning", timeout_graceful_shutdown=3)
    finally:
        scheduler.close()
        if split is not None:
            split.close()


def _split_base_plan(ref: ModelRef, store: Store, hardware: Hardware, ctx: int | None, threads: int | None,
                     parallel: int) -> LoadPlan:
    """This machine's plan for a model split across workers: a model too large for it alone is the point."""
    try:
        return _load_plan(ref, store, hardware, ctx, threads, parallel)
    except DoesNotFitError:
        return LoadPlan(EngineOptions(n_ctx=ctx or DEFAULT_CTX, n_threads=threads, n_parallel=parallel))


def _layers_of(ref: ModelRef, store: Store) -> int:
    """The model's layer count, from its GGUF's metadata."""
    facts, _ = facts_of(ref, store)
    return shape_from_facts(ref.name, facts).layers


@app.command()
def run(
    args: Annotated[list[str], typer.Argument(help="[MODEL] PROMPT: the prompt, optionally after a model name.",
                                              show_default=False)],
    ctx: CtxOption = None,
    threads: ThreadsOption = None,
    max_tokens: AnswerCapOption = DEFAULT_ANSWER_TOKENS,
    temperature: TemperatureOption = None,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible sampling.")] = None,
    system: Annotated[str | None, typer.Option(help="A system prompt.")] = None,
    loop_guard: LoopGuardOption = DEFAULT_LOOP_GUARD,
    repeat_penalty: RepeatPenaltyOption = None,
    cpu_moe: CpuMoeOption = False,
    n_cpu_moe: NCpuMoeOption = None,
    override_tensor: OverrideTensorOption = None,
) -> None:
    """Answer one prompt, streaming to stdout."""
    if len(args) > 2:
        raise typer.BadParameter("give at most a model and one prompt (quote the prompt)")
    model, prompt = (None, args[0]) if len(args) == 1 else (args[0], args[1])
    overrides = tensor_overrides(cpu_moe, n_cpu_moe, override_tensor)
    params = terminal_sampling(max_tokens, temperature, seed, loop_guard, repeat_penalty)
    scheduler, name = _load_for_terminal(model, ctx, threads, overrides)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    try:
        _print_answer(scheduler, name, messages, params, [])
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        scheduler.close()


@app.command()
def chat(
    model: Annotated[str | None, typer.Argument(help=f"Stored model name or .gguf path [default: {BUILTIN_NAME}].")] = None,
    ctx: CtxOption = None,
    threads: ThreadsOption = None,
    temperature: TemperatureOption = None,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible sampling.")] = None,
    system: Annotated[str | None, typer.Option(help="A system prompt.")] = None,
    max_tokens: AnswerCapOption = DEFAULT_ANSWER_TOKENS,
    loop_guard: LoopGuardOption = DEFAULT_LOOP_GUARD,
    repeat_penalty: RepeatPenaltyOption = None,
    cpu_moe: CpuMoeOption = False,
    n_cpu_moe: NCpuMoeOption = None,
    override_tensor: OverrideTensorOption = None,
    docs: DocsOption = None,
) -> None:
    """Chat in the terminal. /bye or Ctrl-D leaves, /clear forgets the conversation; Ctrl-C stops the current answer."""
    overrides = tensor_overrides(cpu_moe, n_cpu_moe, override_tensor)
    library = _docs_library(docs)
    params = terminal_sampling(max_tokens, temperature, seed, loop_guard, repeat_penalty)
    scheduler, name = _load_for_terminal(model, ctx, threads, overrides)
    start: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    history = list(start)
    console.print(f"chatting with [bold]{name}[/]; /bye or Ctrl-D to leave, /clear to start over, "
                  "Ctrl-C stops an answer", highlight=False, soft_wrap=True)
    try:
        while (line := _read_line()) is not None:
            if not line.strip():
                continue
            if line.strip() in ("/bye", "/exit", "/quit"):
                break
            if line.strip() == "/clear":
                history = list(start)
                console.print("[dim]conversation cleared[/]")
                continue
            history.append({"role": "user", "content": line})
            parts: list[str] = []
            try:
                grounding = _grounding(library, docs, history, line, None)
                _print_answer(scheduler, name, history, params, parts, grounding)
            except KeyboardInterrupt:
                console.print("[dim]\\[stopped][/]")
            except HomellmError as exc:
                history.pop()
                console.print(f"[red]error:[/] {exc.one_line()}", highlight=False, soft_wrap=True)
                continue
            history.append({"role": "assistant", "content": "".join(parts)})
    finally:
        scheduler.close()


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question (quote it).", show_default=False)],
    model: ModelOption = None,
    table: Annotated[list[Path] | None, typer.Option(
        "--table", help="A CSV, Parquet or JSON table to answer from (repeat for more).")] = None,
    json_file: Annotated[list[Path] | None, typer.Option(
        "--json-file", help="A JSON document to answer from (repeat for more).")] = None,
    docs: DocsOption = None,
    show_steps: Annotated[bool, typer.Option("--show-steps", help="Print each tool call and its result.")] = False,
    max_steps: Annotated[int, typer.Option(min=1, max=10, help="Tool calls allowed before answering.")] = 3,
    k: Annotated[int, typer.Option("--k", min=1, max=50, help="How many chunks to put in the prompt, at most.")] = 6,
    ctx: CtxOption = None,
    threads: ThreadsOption = None,
    max_tokens: AnswerCapOption = 512,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0)] = 0.2,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible sampling.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="With tools: print the answer and steps as JSON.")] = False,
) -> None:
    """Answer one question. With --table or --json-file the model calls tools (DuckDB queries it fills in,
    never code) and answers from their results; with only --docs it answers from the collection's best
    chunks, citing them as [1] path:lines."""
    library = _docs_library(docs)
    if table or json_file:
        toolbox = Toolbox(table or [], json_file or [], (library, docs) if library and docs else None)
        try:
            _ask_with_tools(question, toolbox, model, ctx, threads, temperature, seed, max_steps, show_steps, as_json)
        finally:
            toolbox.close()
        return
    messages = [{"role": "user", "content": question}]
    grounding = _grounding(library, docs, messages, question, max_tokens or None, k)
    if grounding is not None and not grounding.hits:
        console.print(f"[yellow]warning:[/] nothing in {docs} matches; answering without documents",
                      highlight=False)
    scheduler, name = _load_for_terminal(model, ctx, threads, None)
    params = terminal_sampling(max_tokens, temperature, seed, DEFAULT_LOOP_GUARD)
    try:
        _print_answer(scheduler, name, messages, params, [], grounding)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        scheduler.close()


def _ask_with_tools(question: str, toolbox: Toolbox, model: str | None, ctx: int | None, threads: int | None,
                    temperature: float, seed: int | None, max_steps: int, show_steps: bool, as_json: bool) -> None:
    """Run the tool loop on a loaded model and print the answer (and the steps)."""
    scheduler, name = _load_for_terminal(model, ctx, threads, None)
    chat = scheduler_chat(scheduler, name, temperature, seed)
    try:
        with console.status("thinking with tools…"):
            result = asyncio.run(run_loop(chat, question, toolbox.tools(question), toolbox.context(), max_steps))
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        scheduler.close()
    if as_json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        return
    if show_steps:
        for number, step in enumerate(result.steps, start=1):
            console.print(f"[dim]step {number}: {step.tool}({json.dumps(step.arguments, ensure_ascii=False)})[/]",
                          highlight=False, soft_wrap=True, markup=True)
            console.print(f"[dim]  -> {step.result}[/]", highlight=False, soft_wrap=True)
    print(result.answer)


def _docs_library(name: str | None) -> DocsLibrary | None:
    """The collections, checked to hold `name` before any model loads; None without --docs."""
    if name is None:
        return None
    library = cli_docs.library()
    library.info(name)
    with console.status("loading the embedding model…"):
        library.embedder()
    return library


def _grounding(library: DocsLibrary | None, docs: str | None, messages: list[dict[str, Any]], question: str,
               max_tokens: int | None, k: int = 6) -> Grounding | None:
    if library is None or docs is None:
        return None
    return Grounding(messages, library.search(docs, question, k), max_tokens)


app.command("ls")(cli_store.ls)
app.command("show")(cli_store.show)
app.command("import")(cli_store.import_)
app.command("pull")(cli_store.pull)
app.command("rm")(cli_store.rm)
app.command("cp")(cli_store.cp)
app.command("hw")(cli_plan.hw)
app.command("plan")(cli_plan.plan)
app.command("doctor")(cli_plan.doctor)
app.command("cost")(cli_plan.cost)
app.command("bench")(cli_bench.bench)
app.command("ps")(cli_ps.ps)
app.command("quantize")(cli_quant.quantize)
app.command("eval")(cli_quant.evaluate_command)
app.add_typer(cli_quant.quant_app, name="quant")
app.add_typer(cli_docs.docs_app, name="docs")
app.add_typer(cli_upstream.upstream_app, name="upstream")
app.command("worker")(cli_rpc.worker)


def _read_line() -> str | None:
    try:
        return console.input("[bold green]>>> [/]")
    except EOFError:
        return None
    except KeyboardInterrupt:
        console.print()
        return ""


def _resolve(model: str | None, store: Store) -> ModelRef:
    """A stored model, or a GGUF path that llama.cpp has opened safely in a child process first."""
    ref = resolve_model(model, store)
    if model and model.lower().endswith(".gguf"):
        probe_model_file(ref.path)
    return ref


def _load_plan(ref: ModelRef, store: Store, hardware: Hardware, ctx: int | None, threads: int | None,
               parallel: int, overrides: tuple[TensorOverride, ...] | None = None) -> LoadPlan:
    """The context, GPU layers, experts in RAM and memory the planner gives this model on this machine.

    `overrides` given on the command line replace the planner's choice of experts in RAM.
    """
    facts, _ = facts_of(ref, store)
    fitted = fit_for_serving(shape_from_facts(ref.name, facts), hardware, ctx, DEFAULT_CTX, parallel)
    for warning in fitted.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    # -1 offloads the output layer too, as the plan assumes; llama.cpp counts it as one more layer.
    all_offloaded = fitted.placement.gpu_layers > 0 and fitted.devices[-1].layers == 0
    gpu_layers = -1 if all_offloaded else fitted.placement.gpu_layers
    if overrides is None:
        overrides = n_cpu_moe_overrides(fitted.placement.cpu_moe_layers)
    options = EngineOptions(n_ctx=fitted.placement.ctx, n_threads=threads, n_gpu_layers=gpu_layers,
                            n_parallel=parallel, tensor_overrides=overrides)
    return LoadPlan(options, fitted.total_bytes)


def _load_for_terminal(model: str | None, ctx: int | None, threads: int | None,
                       overrides: tuple[TensorOverride, ...] | None) -> tuple[Scheduler, str]:
    store = cli_store.open_store()
    ref = _resolve(model, store)
    scheduler = Scheduler()
    load_plan = _load_plan(ref, store, detect(probe_seconds=0.1).hardware, ctx, threads, 1, overrides)
    runner = scheduler.add(ref, load_plan.options, load_plan.memory_bytes)
    try:
        with console.status(f"loading {ref.name}…"):
            engine = runner.wait_loaded()
    except BaseException:
        scheduler.close()
        raise
    _report_placements(engine)
    return scheduler, ref.name


def _report_placements(engine: LlamaEngine) -> None:
    """Say where overridden tensors went, and which override patterns matched nothing."""
    for pattern in engine.unmatched_overrides:
        console.print(f"[yellow]warning:[/] the tensor override {pattern!r} matches no tensor of this model",
                      highlight=False, soft_wrap=True)
    if engine.placements:
        by_buffer: dict[str, int] = {}
        for buffer in engine.placements.values():
            by_buffer[buffer] = by_buffer.get(buffer, 0) + 1
        console.print("tensors placed by override: " + ", ".join(f"{n} in {b}" for b, n in by_buffer.items()),
                      highlight=False)


def _print_answer(scheduler: Scheduler, model: str, messages: list[dict[str, Any]],
                  params: SamplingParams, parts: list[str], grounding: Grounding | None = None) -> None:
    """Stream an answer to stdout, appending it to `parts`; Ctrl-C cancels the generation.

    With a grounding, the documents go into the prompt and the sources follow the answer.
    """

    async def stream() -> Finished | None:
        generation = await scheduler.chat(model, messages, params, fit=grounding)
        try:
            async for batch in generation.events():
                for event in batch:
                    if isinstance(event, TextDelta):
                        parts.append(event.text)
                        sys.stdout.write(event.text)
                        sys.stdout.flush()
                    elif isinstance(event, Failed):
                        raise event.error
                    elif isinstance(event, Finished):
                        return event
        finally:
            generation.cancel()
        return None

    finished = None
    try:
        finished = asyncio.run(stream())
    finally:
        if grounding is not None and grounding.sources:
            sys.stdout.write(sources_footer(grounding.sources))
        sys.stdout.write("\n")
        sys.stdout.flush()
    if finished is not None and (note := _cut_short(finished, params)):
        console.print(f"[dim]\\[{note}][/]", highlight=False)


def terminal_sampling(max_tokens: int, temperature: float | None, seed: int | None,
                       loop_guard: int, repeat_penalty: float | None = None) -> SamplingParams:
    """Sampling for an answer read in the terminal: capped, and ended when it loops."""
    try:
        check_repeats(loop_guard)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--loop-guard") from None
    if repeat_penalty is not None and repeat_penalty <= 0:
        raise typer.BadParameter("give a penalty above 0 (1 turns it off)", param_hint="--repeat-penalty")
    return SamplingParams(max_tokens=max_tokens or None, temperature=temperature, seed=seed, loop_guard=loop_guard,
                          repeat_penalty=repeat_penalty, cap_to_context=True)


def _cut_short(finished: Finished, params: SamplingParams) -> str | None:
    """Why an answer ended before the model finished it, for the reader; None when it finished."""
    if finished.reason != "length":
        return None
    if finished.looped:
        return f"stopped: the answer kept repeating itself (--loop-guard {params.loop_guard}; 0 turns it off)"
    if params.max_tokens is not None and finished.completion_tokens >= params.max_tokens:
        return f"stopped at {params.max_tokens:,} tokens (--max-tokens; 0 for no cap)"
    return "stopped: the context is full (a larger --ctx holds more)"


def _check_port_free(host: str, port: int) -> None:
    from homellm.doctor import bind_error

    if error := bind_error(host, port):
        raise HomellmError(f"cannot listen on {host}:{port}: {error}",
                           hint="another server may use the port; pick another with --port")


def _report_load(runner: ModelRunner) -> None:
    start = time.monotonic()
    try:
        engine = runner.wait_loaded()
    except HomellmError as exc:
        console.print(f"[red]error:[/] {exc.one_line()}", highlight=False, soft_wrap=True)
        return
    console.print(f"{runner.ref.name} ready in {time.monotonic() - start:.1f} s", highlight=False)
    _report_placements(engine)
