"""Loaded models: loading on demand, keep-alive, eviction under a memory budget.

Each loaded model has one thread that loads it and then runs its decode loop
(continuous batching over its slots). The scheduler decides which models are
loaded: a model asked for by name is loaded on demand, stays loaded for its
keep-alive after its last request, and the least recently used idle model is
unloaded when another needs its room.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from homellm.engine.llama import EngineOptions, LlamaEngine, load_engine
from homellm.engine.vocabulary import vocabulary_difference
from homellm.errors import (
    HomellmError,
    InvalidRequestError,
    ModelLoadError,
    ModelNotFoundError,
    ServerBusyError,
)
from homellm.generation import (
    CallSyntax,
    Reasoning,
    SamplingParams,
    Thinking,
    check_reasoning_budget,
)
from homellm.models.resolve import ModelRef
from homellm.reasoning import (
    refuse_thinking_off,
    refuse_thinking_without_style,
    style_switches,
    with_reasoning,
)
from homellm.scheduler.draft_model import ModelDrafter
from homellm.scheduler.loop import DecodeLoop
from homellm.scheduler.metrics import LoopGauges, Metrics
from homellm.scheduler.placement import DraftPlan, LoadPlan
from homellm.scheduler.slots import Request
from homellm.scheduler.stream import Generation

log = logging.getLogger(__name__)

LOAD_POLL_SECONDS = 0.05
STOP_WAIT_SECONDS = 2.0
REAP_SECONDS = 0.5
DEFAULT_KEEP_ALIVE = 300.0  # Ollama's five minutes
DEFAULT_MAX_QUEUE = 64
FOREVER = math.inf
LoadState = Literal["loading", "ready", "failed"]
EngineLoader = Callable[[Path, EngineOptions], LlamaEngine]
ModelResolver = Callable[[str], ModelRef]
"""A model's name to its file; raises `ModelNotFoundError` for an unknown name."""
MessageFitter = Callable[[Callable[[str], int], int], list[dict[str, Any]]]
"""(the model's token counter, its context per sequence) to the messages to render."""
# Ollama's default number of loaded models on a CPU-only machine.
DEFAULT_MAX_LOADED = 3


@dataclass(frozen=True)
class ModelStatus:
    """What the scheduler can say about a model without touching it."""

    name: str
    path: Path
    state: LoadState
    n_ctx: int
    created: int
    error: str | None = None
    slots: int = 1
    busy_slots: int = 0
    queued: int = 0
    memory_bytes: int = 0
    expires_at: float | None = None  # Unix time; None while busy or when kept loaded
    decode_seconds: float = 0.0  # how long the decode step running now has run
    overridden: tuple[tuple[str, int], ...] = ()  # buffers that tensor overrides put tensors in, with counts
    unmatched_overrides: tuple[str, ...] = ()  # override patterns that matched no tensor of the model
    kv_type: str = "F16"  # the KV cache's type ("K/V" when they differ)
    speculation: str = "off"  # how tokens are drafted for speculative decoding ("ngram", "draft"), or "off"
    draft: str | None = None  # the draft model's name, with speculation "draft"
    drafted: int = 0  # draft tokens verified since the model loaded
    accepted: int = 0  # of those, the ones accepted

    @property
    def acceptance(self) -> float | None:
        """The share of drafted tokens accepted; None before any was drafted."""
        return self.accepted / self.drafted if self.drafted else None


class ModelRunner:
    """One model: loaded on its own thread, which then runs the model's decode loop."""

    def __init__(self, ref: ModelRef, plan: LoadPlan, load: EngineLoader, metrics: Metrics,
                 max_queue: int = DEFAULT_MAX_QUEUE, keep_alive: float = FOREVER, reloadable: bool = False) -> None:
        self.ref = ref
        self.options = plan.options
        self.draft = plan.draft
        self.memory_bytes = plan.memory_bytes
        self.reloadable = reloadable  # the scheduler may unload it: it can load it again by name
        self.created = int(time.time())
        self.state: LoadState = "loading"
        self.error: HomellmError | None = None
        self.keep_alive = keep_alive
        self._load = load
        self._metrics = metrics
        self._max_queue = max_queue
        self._engine: LlamaEngine | None = None
        self._loop: DecodeLoop | None = None
        self._settled = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"model:{ref.name}", daemon=True)
        self._pending = 0  # requests reserved, queued or running; changed under _lock
        self._retired = False  # chosen for unloading: takes no more requests; changed under _lock
        self._lock = threading.Lock()
        self.last_used = time.monotonic()
        self._expires = time.monotonic() + keep_alive

    def start(self) -> None:
        """Begin loading in the background; requests wait for it."""
        self._thread.start()

    def status(self) -> ModelStatus:
        """A snapshot of the model's state."""
        n_ctx = self._engine.n_ctx if self._engine else self.options.n_ctx
        error = self.error.one_line() if self.error else None
        gauges = self.gauges()
        with self._lock:
            left = self._expires - time.monotonic() if self._pending == 0 and self.reloadable else FOREVER
        expires_at = time.time() + max(0.0, left) if math.isfinite(left) else None
        return ModelStatus(self.ref.name, self.ref.path, self.state, n_ctx, self.created, error,
                           gauges.slots, gauges.busy_slots, gauges.queued, self.memory_bytes, expires_at,
                           gauges.decode_seconds, *self._placed(), kv_type=self.options.kv_type,
                           speculation=self.options.speculation, draft=self.draft.name if self.draft else None,
                           drafted=gauges.drafted, accepted=gauges.accepted)

    def _placed(self) -> tuple[tuple[tuple[str, int], ...], tuple[str, ...]]:
        """Where the tensor overrides put the model's tensors, and the patterns that matched none."""
        if self._engine is None:
            return (), ()
        by_buffer: dict[str, int] = {}
        for buffer in self._engine.placements.values():
            by_buffer[buffer] = by_buffer.get(buffer, 0) + 1
        return tuple(by_buffer.items()), tuple(self._engine.unmatched_overrides)

    def gauges(self) -> LoopGauges:
        """Slots and queue of the decode loop (all zero until loaded)."""
        if self._loop is None:
            return LoopGauges(self.ref.name, 0, self.options.n_parallel, 0)
        return self._loop.gauges()

    async def engine(self) -> LlamaEngine:
        """The loaded engine, once it is loaded; raises the load error if loading failed."""
        # Polled rather than waited on in a thread: a slow load must not hold executor
        # threads, nor keep the process from exiting.
        while not self._settled.is_set():
            await asyncio.sleep(LOAD_POLL_SECONDS)
        return self._loaded()

    def wait_loaded(self, timeout: float | None = None) -> LlamaEngine:
        """Block until loaded; for callers without an event loop (the CLI)."""
        self._settled.wait(timeout)
        return self._loaded()

    def _loaded(self) -> LlamaEngine:
        if self._engine is not None:
            return self._engine
        if self.error is not None:
            raise self.error.with_traceback(None)  # raised again per request; keep no old frames
        raise ModelLoadError(f"{self.ref.name} is still loading", hint="wait, or check /health")

    def submit(self, request: Request) -> None:
        """Queue a prepared request, reserved earlier; `ServerBusyError` when the queue is full."""
        assert self._loop is not None, "submit before the model is loaded"
        self._loop.submit(request)

    def refuse_if_full(self, client: str = "") -> None:
        """`ServerBusyError` now when the model's queue is full for this client, before a request is prepared."""
        assert self._loop is not None, "refuse_if_full before the model is loaded"
        self._loop.refuse_if_full(client)

    def reserve(self) -> bool:
        """Count a request from the moment it picks this model, so the model is not unloaded under it.

        False when the model was already chosen for unloading: the caller loads it again.
        """
        with self._lock:
            if self._retired:
                return False
            self._pending += 1
            self.last_used = time.monotonic()
            return True

    def release(self, keep_alive: float | None = None) -> None:
        """A request is done with this model (or failed before it was queued); restart the keep-alive."""
        with self._lock:
            self._pending -= 1
            self.last_used = time.monotonic()
            self._expires = self.last_used + (self.keep_alive if keep_alive is None else keep_alive)

    def expire(self) -> None:
        """End the keep-alive now: the reaper unloads the model once it is idle."""
        with self._lock:
            self._expires = time.monotonic()

    def idle(self) -> bool:
        """Loaded or failed, with no request queued or running."""
        with self._lock:
            return self._settled.is_set() and self._pending == 0

    def retire(self, only_if_expired: bool = False) -> bool:
        """Take no more requests if idle (and past its keep-alive, if asked); True when retired.

        Checked and set in one step, so a request cannot reserve the model in between.
        """
        with self._lock:
            expired = time.monotonic() >= self._expires
            if self._settled.is_set() and self._pending == 0 and (expired or not only_if_expired):
                self._retired = True
            return self._retired

    def stop(self, wait: bool = True) -> None:
        """Cancel running and queued requests, end the decode loop, free the model (in the background unless `wait`)."""
        with self._lock:
            self._retired = True
        self._stopping.set()
        if self._loop is not None:
            self._loop.stop()
        if wait and self._thread.is_alive() and self._thread is not threading.current_thread():
            # A load cannot be interrupted; the thread is a daemon and dies with the process.
            self._thread.join(timeout=None if self._settled.is_set() else STOP_WAIT_SECONDS)

    def _load_drafter(self, target: LlamaEngine) -> ModelDrafter:
        """The draft model, loaded; refused (and freed) when its vocabulary is not the target's."""
        assert self.draft is not None
        engine = self._load(self.draft.path, self.draft.options)
        difference = vocabulary_difference(target, engine)
        if difference is not None:
            engine.close()
            raise ModelLoadError(f"{self.draft.name} cannot draft for {self.ref.name}: {difference}",
                                 hint="pick a smaller model of the same family (the same tokenizer) as --draft")
        return ModelDrafter(engine, self.draft.name)

    def _run(self) -> None:
        try:
            engine = self._load(self.ref.path, self.options)
            try:
                drafter = self._load_drafter(engine) if self.draft is not None else None
            except BaseException:
                engine.close()
                raise
            self._loop = DecodeLoop(self.ref.name, engine, self._max_queue, self._metrics,
                                    on_done=lambda request: self.release(request.keep_alive), drafter=drafter)
            self._engine, self.state = engine, "ready"
        except HomellmError as exc:
            self.error, self.state = exc, "failed"
        except Exception as exc:  # llama.cpp may fail in ways it does not type
            self.error, self.state = ModelLoadError(f"loading {self.ref.name} failed: {exc}"), "failed"
        finally:
            self._settled.set()
        if self._engine is None or self._loop is None:
            return
        try:
            if self._stopping.is_set():
                self._loop.stop()
            self._loop.run()
            if not self._stopping.is_set():  # the loop died: say so rather than look ready
                self.error, self.state = ModelLoadError(f"{self.ref.name} stopped decoding; see the server log"), "failed"
        finally:
            self._engine.close()


class Scheduler:
    """Every model this process serves, by name; stored models load when first asked for."""

    def __init__(self, load: EngineLoader = load_engine, resolve: ModelResolver | None = None,
                 options: EngineOptions = EngineOptions(), max_loaded: int = DEFAULT_MAX_LOADED,
                 plan_for: Callable[[ModelRef], LoadPlan] | None = None, memory_budget: int | None = None,
                 keep_alive: float = DEFAULT_KEEP_ALIVE, max_queue: int = DEFAULT_MAX_QUEUE,
                 reasoning_budget: int | None = None) -> None:
        self._load = load
        # Thinking tokens a reasoning model may spend when a request sets no budget (serve --reasoning-budget).
        self.reasoning_budget = check_reasoning_budget(reasoning_budget)
        self._resolve = resolve
        self._options = options
        self._plan_for = plan_for  # per model loaded on request: `Placement.plan`, or a fixed plan in tests
        self._max_loaded = max_loaded
        self._memory_budget = memory_budget
        self._keep_alive = keep_alive
        self._max_queue = max_queue
        self._runners: dict[str, ModelRunner] = {}
        self._pinned: dict[str, LoadPlan] = {}  # models given at start: never evicted, reloaded as given
        self._lock = threading.RLock()  # guards _runners against the reaper thread
        self._closed = threading.Event()
        self._reaper: threading.Thread | None = None
        self.default_model: str | None = None
        self.metrics = Metrics(lambda: [r.gauges() for r in self._snapshot() if r.state == "ready"])

    def add(self, ref: ModelRef, options: EngineOptions | None = None, memory_bytes: int = 0,
            reloadable: bool = False, draft: DraftPlan | None = None) -> ModelRunner:
        """Start loading a model given at start (with a `draft` model drafting for it); it stays loaded
        unless a request's keep_alive unloads it, and `reloadable` (its name resolves) lets that happen."""
        plan = LoadPlan(options or self._options, memory_bytes, draft)
        with self._lock:
            self.default_model = self.default_model or ref.name
            if reloadable:
                self._pinned[ref.name] = plan
        return self._start(ref, plan, FOREVER, reloadable)

    def _start(self, ref: ModelRef, plan: LoadPlan, keep_alive: float, reloadable: bool) -> ModelRunner:
        runner = ModelRunner(ref, plan, self._load, self.metrics, self._max_queue, keep_alive, reloadable)
        with self._lock:
            self._runners[ref.name] = runner
        runner.start()
        self._start_reaper()
        return runner

    def _snapshot(self) -> list[ModelRunner]:
        with self._lock:
            return list(self._runners.values())

    def runner(self, name: str) -> ModelRunner:
        """The runner of a model, loading a stored one on first use; else a `ModelNotFoundError`."""
        with self._lock:
            if name in self._runners:
                return self._runners[name]
        if self._resolve is None:
            served = ", ".join(self._runners) or "none"
            raise ModelNotFoundError(f"the model {name!r} does not exist or is not served here",
                                     hint=f"served models: {served}", param="model")
        ref = self._resolve(name)
        with self._lock:
            if ref.name in self._runners:
                return self._runners[ref.name]
        pinned = self._pinned.get(ref.name)
        # The planner may refuse a model that cannot fit; a model given at start reloads as given.
        plan = pinned or (self._plan_for(ref) if self._plan_for else LoadPlan(self._options))
        with self._lock:
            if ref.name in self._runners:
                return self._runners[ref.name]
            self._make_room(ref.name, plan.memory_bytes)
            return self._start(ref, plan, FOREVER if pinned else self._keep_alive, reloadable=True)

    def _make_room(self, name: str, need: int) -> None:
        """Unload least recently used idle models until one more fits the count and the memory budget.

        Models given at start are not unloaded to make room; when the rest are busy, 503.
        """
        def short_of() -> str | None:
            used = sum(r.memory_bytes for r in self._runners.values())
            if self._memory_budget is not None and used + need > self._memory_budget:
                return (f"{name} needs {need / 1e9:.1f} GB, and the loaded models use {used / 1e9:.1f} "
                        f"of the {self._memory_budget / 1e9:.1f} GB budget")
            if len(self._runners) >= self._max_loaded:
                return f"{len(self._runners)} models are loaded, the most this server keeps (--max-loaded)"
            return None

        candidates = sorted((r for r in self._runners.values() if r.ref.name not in self._pinned and r.reloadable),
                            key=lambda r: r.last_used)
        for victim in candidates:
            if short_of() is None:
                return
            if victim.retire():
                log.info("unloading %s to make room for %s", victim.ref.name, name)
                self._unload(victim, wait=False)  # freed by its own thread; the event loop goes on
        if (reason := short_of()) is not None and self._runners:
            raise ServerBusyError(f"{reason}, and they are busy",
                                  hint="retry when they are idle, or unload one with keep_alive 0", retry_after=5)

    def _unload(self, runner: ModelRunner, wait: bool = True) -> None:
        with self._lock:
            if self._runners.get(runner.ref.name) is runner:
                del self._runners[runner.ref.name]
        runner.stop(wait)

    def _start_reaper(self) -> None:
        with self._lock:
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="scheduler:keep-alive", daemon=True)
                self._reaper.start()

    def _reap(self) -> None:
        """Unload models idle past their keep-alive, until the scheduler closes."""
        while not self._closed.wait(REAP_SECONDS):
            for runner in self._snapshot():
                if runner.reloadable and runner.retire(only_if_expired=True):
                    log.info("unloading %s: idle past its keep-alive", runner.ref.name)
                    self._unload(runner)

    async def _engine(self, model: str) -> tuple[ModelRunner, LlamaEngine]:
        """The model's runner, reserved for one request, and its loaded engine."""
        runner = self.runner(model)
        while not runner.reserve():  # being unloaded just now: load it again
            self._unload(runner, wait=False)
            runner = self.runner(model)
        try:
            return runner, await runner.engine()
        except BaseException:
            runner.release()
            # A model that failed to load is forgotten, so a later request tries again.
            if runner.reloadable and runner.state == "failed":
                self._unload(runner, wait=False)
            raise

    def statuses(self) -> list[ModelStatus]:
        """Every loaded (or loading) model with its state."""
        return [r.status() for r in self._snapshot()]

    async def chat(self, model: str, messages: list[dict[str, Any]], params: SamplingParams,
                   keep_alive: float | None = None, fit: MessageFitter | None = None,
                   tools: list[dict[str, Any]] | None = None, client: str = "",
                   thinking: Thinking = Thinking(strict=False)) -> Generation:
        """Queue a chat request: template, tokens and limits are checked before it queues.

        `fit` rewrites the messages once the model is known, given its token counter
        and context per sequence (documents are put in within the context budget).
        `tools` (OpenAI's list) goes to a template that knows tools. `client` says who asked:
        the queue is shared fairly between clients. `thinking` is what the request asks of a
        reasoning model's thinking: it reaches the template, and the generation says how to split
        the answer (`Generation.reasoning`).
        """
        runner, engine = await self._engine(model)
        style = engine.chat_template.thinking
        try:
            refuse_thinking_without_style(model, style, thinking)
        except BaseException:
            runner.release(keep_alive)
            raise
        switches = style_switches(style, thinking)

        def render() -> str:
            shown = fit(lambda text: len(engine.tokenize(text)), engine.n_ctx) if fit else messages
            return engine.chat_template.render(shown, add_generation_prompt=True, tools=tools, **switches)

        def reasoning_of(prompt: str) -> Reasoning | None:
            if style is None:
                return None
            thinks = thinking.enabled is not False or not style.switch
            reasoning = style.reasoning(prompt, (thinking.budget or self.reasoning_budget) if thinks else None)
            refuse_thinking_off(model, style, thinking, reasoning)
            return reasoning

        return self._enqueue(runner, engine, render, params, "messages", keep_alive, client, reasoning_of)

    async def load(self, model: str, keep_alive: float | None = None) -> ModelStatus:
        """Load a model (if it is not loaded) and keep it for `keep_alive`, with no request."""
        runner, _ = await self._engine(model)
        runner.release(keep_alive)
        return runner.status()

    def unload(self, model: str) -> bool:
        """Let a loaded model go as soon as its requests are done; False when it is not loaded."""
        with self._lock:
            runner = self._runners.get(model)
        if runner is None and self._resolve is not None:
            try:
                name = self._resolve(model).name
            except HomellmError:
                return False
            with self._lock:
                runner = self._runners.get(name)
        if runner is None:
            return False
        runner.expire()
        return True

    async def count_chat_tokens(self, model: str, messages: list[dict[str, Any]],
                                tools: list[dict[str, Any]] | None = None) -> int:
        """How many tokens the messages take in the model's chat template (the model is loaded for it)."""
        runner, engine = await self._engine(model)
        try:
            return len(engine.tokenize(engine.render_chat(messages, tools)))
        finally:
            runner.release()

    async def call_syntax(self, model: str) -> CallSyntax:
        """How the model writes tool calls, from its chat template (the model is loaded for it)."""
        runner, engine = await self._engine(model)
        try:
            return engine.chat_template.call_syntax
        finally:
            runner.release()

    async def complete(self, model: str, prompt: str, params: SamplingParams,
                       keep_alive: float | None = None, client: str = "") -> Generation:
        """Queue a plain completion of a prompt (`client` as for `chat`)."""
        runner, engine = await self._engine(model)
        return self._enqueue(runner, engine, lambda: prompt, params, "prompt", keep_alive, client)

    def _enqueue(self, runner: ModelRunner, engine: LlamaEngine, render: Callable[[], str],
                 params: SamplingParams, prompt_param: str, keep_alive: float | None, client: str,
                 reasoning_of: Callable[[str], Reasoning | None] | None = None) -> Generation:
        # Tokenized here, without awaiting, so requests queue in the order they arrived.
        try:
            runner.refuse_if_full(client)
            text = render()
            reasoning = reasoning_of(text) if reasoning_of is not None else None
            if reasoning is not None:
                params = with_reasoning(params, reasoning)
            prompt = engine.tokenize(text)
            if not prompt:
                raise InvalidRequestError(f"{prompt_param} has no tokens to start from",
                                          hint="send some text", param=prompt_param)
            budget = engine.completion_budget(len(prompt), params.max_tokens, prompt_param, params.cap_to_context)
            grammar = engine.grammar(params.response_format)
            generation = Generation(asyncio.get_running_loop(), len(prompt))
            generation.reasoning = reasoning
            runner.submit(Request(generation, prompt, params, grammar, budget, keep_alive, client))
        except BaseException:
            runner.release(keep_alive)
            raise
        return generation

    def close(self) -> None:
        """Stop every model's decode loop and free its memory."""
        self._closed.set()
        for runner in self._snapshot():
            runner.stop()

