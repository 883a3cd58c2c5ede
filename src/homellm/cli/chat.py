"""`homellm run`, `chat` and `ask`: answers in the terminal, from a model loaded in this process."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from homellm.cli.docs import library as docs_library
from homellm.cli.options import (
    DEFAULT_ANSWER_TOKENS,
    DEFAULT_LOOP_GUARD,
    AnswerCapOption,
    CpuMoeOption,
    CtxOption,
    DocsOption,
    DraftOption,
    KvTypeKOption,
    KvTypeOption,
    KvTypeVOption,
    LoopGuardOption,
    ModelOption,
    NCpuMoeOption,
    OverrideTensorOption,
    ReasoningBudgetOption,
    RepeatPenaltyOption,
    SpecOption,
    TemperatureOption,
    ThinkOption,
    ThreadsOption,
    kv_cache_type,
    reasoning_budget,
    speculation_mode,
    tensor_overrides,
)
from homellm.cli.output import console, print_placement, warn
from homellm.cli.store import open_store
from homellm.docs import DocsLibrary
from homellm.docs.answer import Grounding, sources_footer
from homellm.errors import HomellmError
from homellm.generation import Failed, Finished, SamplingParams, TextDelta, Thinking
from homellm.hardware.detect import detect
from homellm.models.builtin import BUILTIN_NAME
from homellm.planner.overrides import TensorOverride
from homellm.reasoning import ReasoningSplitter, Split
from homellm.scheduler import Placement, Scheduler, loadable_model
from homellm.scheduler.repetition import check_repeats
from homellm.tools.loop import LoopResult, run_loop, scheduler_chat
from homellm.tools.toolbox import Toolbox


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
    kv_type: KvTypeOption = None,
    kv_type_k: KvTypeKOption = None,
    kv_type_v: KvTypeVOption = None,
    spec: SpecOption = "off",
    draft: DraftOption = None,
    think: ThinkOption = None,
    reasoning_budget_tokens: ReasoningBudgetOption = None,
) -> None:
    """Answer one prompt, streaming to stdout (a reasoning model's thinking goes to stderr, dimmed)."""
    if len(args) > 2:
        raise typer.BadParameter("give at most a model and one prompt (quote the prompt)")
    model, prompt = (None, args[0]) if len(args) == 1 else (args[0], args[1])
    overrides = tensor_overrides(cpu_moe, n_cpu_moe, override_tensor)
    params = terminal_sampling(max_tokens, temperature, seed, loop_guard, repeat_penalty)
    thinking = terminal_thinking(think, reasoning_budget_tokens)
    scheduler, name = _load_for_terminal(model, ctx, threads, overrides, kv_cache_type(kv_type, kv_type_k, kv_type_v),
                                         speculation_mode(spec, draft), draft)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    try:
        _print_answer(scheduler, name, messages, params, [], thinking=thinking)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        scheduler.close()


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
    kv_type: KvTypeOption = None,
    kv_type_k: KvTypeKOption = None,
    kv_type_v: KvTypeVOption = None,
    spec: SpecOption = "off",
    draft: DraftOption = None,
    think: ThinkOption = None,
    reasoning_budget_tokens: ReasoningBudgetOption = None,
    docs: DocsOption = None,
) -> None:
    """Chat in the terminal. /bye or Ctrl-D leaves, /clear forgets the conversation; Ctrl-C stops the current answer."""
    overrides = tensor_overrides(cpu_moe, n_cpu_moe, override_tensor)
    library = _docs_library(docs)
    params = terminal_sampling(max_tokens, temperature, seed, loop_guard, repeat_penalty)
    thinking = terminal_thinking(think, reasoning_budget_tokens)
    scheduler, name = _load_for_terminal(model, ctx, threads, overrides, kv_cache_type(kv_type, kv_type_k, kv_type_v),
                                         speculation_mode(spec, draft), draft)
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
                _print_answer(scheduler, name, history, params, parts, grounding, thinking)
            except KeyboardInterrupt:
                console.print("[dim]\\[stopped][/]")
            except HomellmError as exc:
                history.pop()
                console.print(f"[red]error:[/] {exc.one_line()}", highlight=False, soft_wrap=True)
                continue
            history.append({"role": "assistant", "content": "".join(parts)})
    finally:
        scheduler.close()


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

    async def answer() -> LoopResult:
        syntax = await scheduler.call_syntax(name)
        return await run_loop(chat, question, toolbox.tools(question), toolbox.context(), max_steps, syntax)

    try:
        with console.status("thinking with tools…"):
            result = asyncio.run(answer())
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
    library = docs_library()
    library.info(name)
    with console.status("loading the embedding model…"):
        library.embedder()
    return library


def _grounding(library: DocsLibrary | None, docs: str | None, messages: list[dict[str, Any]], question: str,
               max_tokens: int | None, k: int = 6) -> Grounding | None:
    if library is None or docs is None:
        return None
    return library.grounding([docs], messages, question, k, max_tokens)


def _read_line() -> str | None:
    try:
        return console.input("[bold green]>>> [/]")
    except EOFError:
        return None
    except KeyboardInterrupt:
        console.print()
        return ""


def _load_for_terminal(model: str | None, ctx: int | None, threads: int | None,
                       overrides: tuple[TensorOverride, ...] | None,
                       kv_type: str | None = None, speculation: str = "off",
                       draft: str | None = None) -> tuple[Scheduler, str]:
    store = open_store()
    ref = loadable_model(model, store)
    scheduler = Scheduler()
    placement = Placement(store, detect(probe_seconds=0.1).hardware, threads, 1, warn=warn, kv_type=kv_type,
                          speculation=speculation)
    placement.check_speculation(ref)
    load_plan = placement.plan(ref, ctx, overrides)
    if draft is not None:
        load_plan = placement.with_draft(ref, load_plan, loadable_model(draft, store))
    runner = scheduler.add(ref, load_plan.options, load_plan.memory_bytes, draft=load_plan.draft)
    try:
        with console.status(f"loading {ref.name}…"):
            runner.wait_loaded()
    except BaseException:
        scheduler.close()
        raise
    print_placement(runner.status())
    return scheduler, ref.name


def _print_answer(scheduler: Scheduler, model: str, messages: list[dict[str, Any]],
                  params: SamplingParams, parts: list[str], grounding: Grounding | None = None,
                  thinking: Thinking = Thinking(strict=False)) -> None:
    """Stream an answer to stdout, appending it to `parts`; Ctrl-C cancels the generation.

    With a grounding, the documents go into the prompt and the sources follow the answer. A reasoning
    model's thinking goes to stderr, dimmed, and is not part of the answer (nor of the history).
    """

    async def stream() -> Finished | None:
        generation = await scheduler.chat(model, messages, params, fit=grounding, thinking=thinking)
        shown = _ThinkingShown(ReasoningSplitter(generation.reasoning) if generation.reasoning else None)
        try:
            async for batch in generation.events():
                for event in batch:
                    if isinstance(event, TextDelta):
                        _write_answer(shown.feed(event.text), parts)
                    elif isinstance(event, Failed):
                        raise event.error
                    elif isinstance(event, Finished):
                        _write_answer(shown.finish(), parts)
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


class _ThinkingShown:
    """A reasoning model's thinking printed dimmed on stderr as it comes, the answer handed on for stdout."""

    def __init__(self, splitter: ReasoningSplitter | None) -> None:
        self._splitter = splitter
        self._thought = False

    def feed(self, text: str) -> str:
        """The answer's part of `text`, after printing its thinking part."""
        return self._shown(self._splitter.feed(text)) if self._splitter is not None else text

    def finish(self) -> str:
        """The answer's text held at the end (an unfinished thought is printed)."""
        return self._shown(self._splitter.finish()) if self._splitter is not None else ""

    def _shown(self, part: Split) -> str:
        if part.reasoning:
            if not self._thought:
                console.print("thinking… ", style="dim bold", end="", highlight=False)
            console.print(part.reasoning, style="dim italic", end="", markup=False, highlight=False, soft_wrap=True)
            self._thought = True
        if part.content and self._thought:
            console.print("\n", end="", highlight=False)  # the answer starts below the thinking
            self._thought = False
        return part.content


def _write_answer(text: str, parts: list[str]) -> None:
    if text:
        parts.append(text)
        sys.stdout.write(text)
        sys.stdout.flush()


def terminal_thinking(think: bool | None, budget: int | None) -> Thinking:
    """What `--think/--no-think` and `--reasoning-budget` ask of a reasoning model (checked before it loads)."""
    return Thinking(enabled=think, budget=reasoning_budget(budget), param="--think" if think else "--no-think")


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


