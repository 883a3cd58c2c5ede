"""One loaded GGUF model with its llama.cpp context, driven through llama-cpp-python.

A `LlamaEngine` is used by one thread at a time for generation (the
scheduler's worker); tokenizing and rendering templates only read the
vocabulary and may run on other threads.
"""

from __future__ import annotations

import codecs
import ctypes
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp import Llama, LlamaGrammar

from homellm.engine.grammar import grammar_for
from homellm.engine.stops import StopScanner
from homellm.engine.templates import ChatTemplate
from homellm.errors import ContextLengthExceededError, ModelLoadError
from homellm.generation import (
    Finished,
    GenerationEvent,
    ResponseFormat,
    SamplingParams,
    TextDelta,
)

DEFAULT_BATCH = 512

# With verbose=False, llama-cpp-python points file descriptors 1 and 2 at /dev/null
# while it loads, for the whole process. Two loads at once would restore them in the
# wrong order and leave the process mute, so loads take turns.
_LOAD_LOCK = threading.Lock()


@dataclass(frozen=True)
class EngineOptions:
    """How to load a model: context length, CPU threads (None: every core we may use), GPU layers."""

    n_ctx: int = 4096
    n_threads: int | None = None
    n_batch: int = DEFAULT_BATCH
    n_gpu_layers: int = 0  # the planner's placement; a CPU-only build ignores it


def default_threads() -> int:
    """The cores this process may run on; llama-cpp-python's own default is half of them."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


class LlamaEngine:
    """A GGUF model loaded into llama.cpp, ready to tokenize and generate."""

    def __init__(self, path: Path, options: EngineOptions = EngineOptions()) -> None:
        self.path = Path(path)
        threads = options.n_threads or default_threads()
        try:
            with _LOAD_LOCK:
                self._llm = Llama(
                    model_path=str(self.path),
                    n_ctx=options.n_ctx,
                    n_batch=min(options.n_batch, options.n_ctx),
                    n_threads=threads,
                    n_threads_batch=threads,
                    n_gpu_layers=options.n_gpu_layers,
                    verbose=False,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"llama.cpp could not load {self.path.name}: {exc}",
                hint="check that the file is a complete GGUF model",
            ) from None
        self._vocab = self._llm._model.vocab
        self._piece_buffer = ctypes.create_string_buffer(256)
        self._chunk = self._llm.n_batch
        self._prefilled: list[int] = []  # whole prompt chunks now in the KV cache
        # llama.cpp may round the context up; llama-cpp-python's buffers keep the size asked for.
        self.n_ctx = min(options.n_ctx, self._llm.n_ctx()) if options.n_ctx else self._llm.n_ctx()
        self.metadata: dict[str, str] = dict(self._llm.metadata)
        self._bos_text = self._special_text(self._llm.token_bos())
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self.chat_template = ChatTemplate(
            self.metadata.get("tokenizer.chat_template"),
            bos_token=self._bos_text,
            eos_token=self._special_text(self._llm.token_eos()),
        )

    def render_chat(self, messages: list[dict[str, Any]]) -> str:
        """The prompt text for a conversation, by the model's own template."""
        return self.chat_template.render(messages, add_generation_prompt=True)

    def tokenize(self, text: str) -> list[int]:
        """Prompt tokens; special tokens written in the text are parsed, BOS added once."""
        add_bos = self._add_bos and not (self._bos_text and text.startswith(self._bos_text))
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def grammar(self, response_format: ResponseFormat) -> str | None:
        """The checked GBNF grammar that enforces a response format, or None for free text."""
        return grammar_for(response_format, self._vocab)

    def completion_budget(self, n_prompt: int, max_tokens: int | None, prompt_param: str = "messages") -> int:
        """How many tokens may be generated; refuses what does not fit, never truncates."""
        room = self.n_ctx - n_prompt
        if room <= 0:
            raise ContextLengthExceededError(
                f"the prompt is {n_prompt} tokens, and this model's context holds {self.n_ctx}",
                hint=f"shorten the {prompt_param}, or serve the model with a larger --ctx",
                param=prompt_param,
            )
        if max_tokens is None:
            return room
        if max_tokens > room:
            raise ContextLengthExceededError(
                f"the prompt ({n_prompt} tokens) plus max_tokens ({max_tokens}) is more than "
                f"this model's context of {self.n_ctx} tokens",
                hint=f"ask for at most {room} tokens, or serve the model with a larger --ctx",
                param="max_tokens",
            )
        return max_tokens

    def generate(
        self,
        prompt: list[int],
        params: SamplingParams,
        grammar: str | None,
        cancelled: Callable[[], bool],
    ) -> Iterator[GenerationEvent]:
        """Decode an answer; yields text as it becomes valid, then one `Finished`."""
        budget = self.completion_budget(len(prompt), params.max_tokens)
        # Llama.generate reuses at most the first n_tokens of its cache and drops the rest.
        self._llm.n_tokens = self._reusable_prefix(prompt)
        self._prefilled = []
        self._llm.set_seed(params.seed if params.seed is not None else random.getrandbits(31))
        tokens = self._llm.generate(
            prompt,
            temp=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            min_p=params.min_p,
            repeat_penalty=params.repeat_penalty,
            grammar=LlamaGrammar.from_string(grammar, verbose=False) if grammar else None,
        )
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopScanner(params.stop)
        generated = 0
        reason = "length"
        try:
            for token in tokens:
                if generated == 0:
                    self._prefilled = prompt[: len(prompt) // self._chunk * self._chunk]
                if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    reason = "stop"
                    break
                generated += 1
                text = stops.feed(decoder.decode(self._piece(token)))
                if text:
                    yield TextDelta(text)
                if stops.stopped:
                    reason = "stop"
                    break
                if generated >= budget:
                    break
                if cancelled():
                    reason = "cancelled"
                    break
        finally:
            tokens.close()
        if not stops.stopped:
            rest = stops.feed(decoder.decode(b"", final=True)) + stops.flush()
            if rest:
                yield TextDelta(rest)
        yield Finished(reason, len(prompt), generated)  # type: ignore[arg-type]

    def _reusable_prefix(self, prompt: list[int]) -> int:
        """How many cached tokens to keep: whole prompt chunks shared with the last prompt.

        llama.cpp's logits depend slightly on how tokens were batched, so reusing an
        arbitrary prefix makes a greedy answer depend on the request before it. Keeping
        only whole chunks at fixed positions, each evaluated as a prompt chunk, means a
        prompt is always evaluated in the same pieces, and answers are reproducible.
        """
        limit = min(len(self._prefilled), (len(prompt) - 1) // self._chunk * self._chunk)
        shared = 0
        while shared < limit and self._prefilled[shared] == prompt[shared]:
            shared += 1
        return shared // self._chunk * self._chunk

    def time_eval(self, tokens: list[int]) -> float:
        """Seconds to evaluate `tokens` on top of what is in the cache (for benchmarks)."""
        start = time.perf_counter()
        self._llm.eval(tokens)
        return time.perf_counter() - start

    def fill(self, context: list[int]) -> None:
        """Evaluate `context` into an empty cache (for benchmarks)."""
        self._forget()
        self._llm.eval(context)

    def time_steps(self, token: int, steps: int) -> float:
        """Seconds for `steps` one-token decode steps on what is in the cache (for benchmarks).

        The token fed back is fixed: sampling takes no part in what is measured, the decode step does.
        """
        start = time.perf_counter()
        for _ in range(steps):
            self._llm.eval([token])
        return time.perf_counter() - start

    def _forget(self) -> None:
        self._llm.reset()
        self._prefilled = []

    def close(self) -> None:
        """Free the model and context now rather than when garbage is collected."""
        self._llm.close()

    def _piece(self, token: int) -> bytes:
        n = llama_cpp.llama_token_to_piece(self._vocab, token, self._piece_buffer,
                                           len(self._piece_buffer), 0, False)
        if n < 0:
            self._piece_buffer = ctypes.create_string_buffer(-n)
            return self._piece(token)
        return self._piece_buffer.raw[:n]

    def _special_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="replace")


def load_engine(path: Path, options: EngineOptions) -> LlamaEngine:
    """Load a GGUF file; the scheduler's default loader."""
    return LlamaEngine(path, options)
