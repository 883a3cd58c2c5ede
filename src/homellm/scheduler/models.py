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
        """Queue a prepared request behind those already waiting."""
        self._jobs.put(_Job(generation, prompt, params, grammar))

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
                self._serve(job)
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
    """Every model this process serves, by name."""

    def __init__(self, load: EngineLoader = load_engine) -> None:
        self._load = load
        self._runners: dict[str, ModelRunner] = {}

    def add(self, ref: ModelRef, options: EngineOptions = EngineOptions()) -> ModelRunner:
        """Start loading a model; it serves once loaded."""
        runner = ModelRunner(ref, options, self._load)
        self._runners[ref.name] = runner
        runner.start()
        return runner

    def runner(self, name: str) -> ModelRunner:
        """The runner of a served model; an unknown name is a `ModelNotFoundError`."""
        try:
            return self._runners[name]
        except KeyError:
            served = ", ".join(self._runners) or "none"
            raise ModelNotFoundError(
                f"the model {name!r} does not exist or is not served here",
                hint=f"served models: {served}",
                param="model",
            ) from None

    def statuses(self) -> list[ModelStatus]:
        """Every served model with its state."""
        return [r.status() for r in self._runners.values()]

    async def chat(self, model: str, messages: list[dict[str, Any]],
                   params: SamplingParams) -> Generation:
        """Queue a chat request: template, tokens and limits are checked before it queues."""
        engine = await self.runner(model).engine()
        return self._enqueue(model, engine, engine.render_chat(messages), params, "messages")

    async def complete(self, model: str, prompt: str, params: SamplingParams) -> Generation:
        """Queue a plain completion of a prompt."""
        engine = await self.runner(model).engine()
        return self._enqueue(model, engine, prompt, params, "prompt")

    def _enqueue(self, model: str, engine: LlamaEngine, text: str, params: SamplingParams,
                 prompt_param: str) -> Generation:
        # Tokenized here, without awaiting, so requests queue in the order they arrived.
        prompt = engine.tokenize(text)
        engine.completion_budget(len(prompt), params.max_tokens, prompt_param)
        grammar = engine.grammar(params.response_format)
        generation = Generation(asyncio.get_running_loop(), len(prompt))
        self.runner(model).submit(generation, prompt, params, grammar)
        return generation

    def close(self) -> None:
        """Stop every model's worker and free its memory."""
        for runner in self._runners.values():
            runner.stop()
