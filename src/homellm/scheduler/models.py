"""Loaded models: each has one worker thread that serves its requests in arrival order.

One request runs at a time per model and a new request never interrupts a
running one (llama-cpp-python's own server lets it). Continuous batching
replaces the one-at-a-time loop in a later step; the interface stays.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from homellm.engine.llama import EngineOptions, LlamaEngine, load_engine
from homellm.errors import HomellmError, ModelLoadError, ModelNotFoundError
from homellm.generation import Failed, Finished, SamplingParams
from homellm.models.resolve import ModelRef
from homellm.scheduler.generation import Generation

log = logging.getLogger(__name__)

LOAD_POLL_SECONDS = 0.05
STOP_WAIT_SECONDS = 2.0
LoadState = Literal["loading", "ready", "failed"]
EngineLoader = Callable[[Path, EngineOptions], LlamaEngine]
ModelResolver = Callable[[str], ModelRef]
"""A model's name to its file; raises `ModelNotFoundError` for an unknown name."""
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


@dataclass
class _Job:
    generation: Generation
    prompt: list[int]
    params: SamplingParams
    grammar: str | None


class ModelRunner:
    """One model, loaded on its own thread, serving queued requests one after another."""

    def __init__(self, ref: ModelRef, options: EngineOptions, load: EngineLoader) -> None:
        self.ref = ref
        self.options = options
        self.created = int(time.time())
        self.state: LoadState = "loading"
        self.error: HomellmError | None = None
        self._load = load
        self._engine: LlamaEngine | None = None
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._settled = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"model:{ref.name}", daemon=True)
        self._pending = 0  # requests reserved, queued or running; changed under _lock
        self._lock = threading.Lock()
        self.last_used = time.monotonic()

    def start(self) -> None:
        """Begin loading in the background; requests wait for it."""
        self._thread.start()

    def status(self) -> ModelStatus:
        """A snapshot of the model's state."""
        n_ctx = self._engine.n_ctx if self._engine else self.options.n_ctx
        error = self.error.one_line() if self.error else None
        return ModelStatus(self.ref.name, self.ref.path, self.state, n_ctx, self.created, error)

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

    def submit(self, generation: Generation, prompt: list[int], params: SamplingParams,
               grammar: str | None) -> None:
        """Queue a prepared request, reserved earlier, behind those already waiting."""
        self._jobs.put(_Job(generation, prompt, params, grammar))

    def reserve(self) -> None:
        """Count a request from the moment it picks this model, so the model is not unloaded under it."""
        with self._lock:
            self._pending += 1
            self.last_used = time.monotonic()

    def release(self) -> None:
        """Undo `reserve` for a request that failed before it was queued."""
        with self._lock:
            self._pending -= 1

    def idle(self) -> bool:
        """Loaded or failed, with no request queued or running: safe to unload."""
        with self._lock:
            return self._settled.is_set() and self._pending == 0

    def stop(self) -> None:
        """Stop the running request at its next token, drop the queue, free the model."""
        self._stopping.set()
        self._jobs.put(None)
        if self._thread.is_alive():
            # A load cannot be interrupted; the thread is a daemon and dies with the process.
            self._thread.join(timeout=None if self._settled.is_set() else STOP_WAIT_SECONDS)

    def _run(self) -> None:
        try:
            self._engine = self._load(self.ref.path, self.options)
            self.state = "ready"
        except HomellmError as exc:
            self.error, self.state = exc, "failed"
        except Exception as exc:  # llama.cpp may fail in ways it does not type
            self.error, self.state = ModelLoadError(f"loading {self.ref.name} failed: {exc}"), "failed"
        finally:
            self._settled.set()
        if self._engine is None:
            return
        try:
            while (job := self._jobs.get()) is not None:
                try:
                    self._serve(job)
                finally:
                    with self._lock:
                        self._pending -= 1
                        self.last_used = time.monotonic()
        finally:
            self._engine.close()

    def _serve(self, job: _Job) -> None:
        gen = job.generation
        if gen.cancelled or self._stopping.is_set():
            gen.push(Finished("cancelled", len(job.prompt), 0))
            return
        try:
            for event in self._engine.generate(job.prompt, job.params, job.grammar,  # type: ignore[union-attr]
                                               lambda: gen.cancelled or self._stopping.is_set()):
                gen.push(event)
        except HomellmError as exc:
            gen.push(Failed(exc))
        except Exception as exc:  # the request fails; the model and the server keep serving
            log.exception("generation failed on %s", self.ref.name)
            gen.push(Failed(exc))


class Scheduler:
    """Every model this process serves, by name; stored models load when first asked for."""

    def __init__(self, load: EngineLoader = load_engine, resolve: ModelResolver | None = None,
                 options: EngineOptions = EngineOptions(), max_loaded: int = DEFAULT_MAX_LOADED,
                 options_for: Callable[[ModelRef], EngineOptions] | None = None) -> None:
        self._load = load
        self._resolve = resolve
        self._options = options
        self._options_for = options_for  # per model, e.g. the planner's context and GPU layers
        self._max_loaded = max_loaded
        self._runners: dict[str, ModelRunner] = {}
        self._on_demand: set[str] = set()

    def add(self, ref: ModelRef, options: EngineOptions | None = None) -> ModelRunner:
        """Start loading a model; it serves once loaded."""
        runner = ModelRunner(ref, options or self._options, self._load)
        self._runners[ref.name] = runner
        runner.start()
        return runner

    def runner(self, name: str) -> ModelRunner:
        """The runner of a model, loading a stored one on first use; else a `ModelNotFoundError`."""
        if name in self._runners:
            return self._runners[name]
        if self._resolve is None:
            served = ", ".join(self._runners) or "none"
            raise ModelNotFoundError(f"the model {name!r} does not exist or is not served here",
                                     hint=f"served models: {served}", param="model")
        ref = self._resolve(name)
        if ref.name in self._runners:
            return self._runners[ref.name]
        options = self._options_for(ref) if self._options_for else None  # may refuse a model that cannot fit
        self._make_room()
        self._on_demand.add(ref.name)
        return self.add(ref, options)

    def _make_room(self) -> None:
        """Unload the least recently used idle models loaded on demand until one more fits the limit.

        Models given at start are never unloaded: nothing could load them again by name.
        """
        idle = sorted((r for r in self._runners.values() if r.ref.name in self._on_demand and r.idle()),
                      key=lambda r: r.last_used)
        while len(self._runners) >= self._max_loaded and idle:
            victim = idle.pop(0)
            log.info("unloading %s to make room", victim.ref.name)
            del self._runners[victim.ref.name]
            self._on_demand.discard(victim.ref.name)
            victim.stop()

    async def _engine(self, model: str) -> tuple[ModelRunner, LlamaEngine]:
        """The model's runner, reserved for one request, and its loaded engine."""
        runner = self.runner(model)
        runner.reserve()
        try:
            return runner, await runner.engine()
        except BaseException:
            runner.release()
            # A model loaded on demand that failed is forgotten, so a later request tries again.
            if runner.ref.name in self._on_demand and self._runners.get(runner.ref.name) is runner:
                del self._runners[runner.ref.name]
                self._on_demand.discard(runner.ref.name)
                runner.stop()
            raise

    def statuses(self) -> list[ModelStatus]:
        """Every served model with its state."""
        return [r.status() for r in self._runners.values()]

    async def chat(self, model: str, messages: list[dict[str, Any]],
                   params: SamplingParams) -> Generation:
        """Queue a chat request: template, tokens and limits are checked before it queues."""
        runner, engine = await self._engine(model)
        return self._enqueue(runner, engine, lambda: engine.render_chat(messages), params, "messages")

    async def complete(self, model: str, prompt: str, params: SamplingParams) -> Generation:
        """Queue a plain completion of a prompt."""
        runner, engine = await self._engine(model)
        return self._enqueue(runner, engine, lambda: prompt, params, "prompt")

    def _enqueue(self, runner: ModelRunner, engine: LlamaEngine, render: Callable[[], str],
                 params: SamplingParams, prompt_param: str) -> Generation:
        # Tokenized here, without awaiting, so requests queue in the order they arrived.
        try:
            prompt = engine.tokenize(render())
            engine.completion_budget(len(prompt), params.max_tokens, prompt_param)
            grammar = engine.grammar(params.response_format)
        except BaseException:
            runner.release()
            raise
        generation = Generation(asyncio.get_running_loop(), len(prompt))
        runner.submit(generation, prompt, params, grammar)
        return generation

    def close(self) -> None:
        """Stop every model's worker and free its memory."""
        for runner in self._runners.values():
            runner.stop()
