"""One loaded GGUF model with its llama.cpp context of parallel sequences.

The context holds `n_parallel` sequences, each with its own KV cache of `n_ctx`
tokens, decoded together in one `llama_decode` per step. Decoding and sampling
happen on one thread at a time (the scheduler's decode loop); tokenizing and
rendering templates only read the vocabulary and may run on other threads.
"""

from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

from homellm.engine.batch import TokenBatch
from homellm.engine.grammar import grammar_for
from homellm.engine.kv_cache import ggml_kv_types, needs_flash_attention
from homellm.engine.loading import load_model
from homellm.engine.overrides import OverrideArray, unmatched
from homellm.engine.sampling import Sampler
from homellm.engine.templates import ChatTemplate
from homellm.errors import ContextLengthExceededError, EngineError, ModelLoadError
from homellm.generation import ResponseFormat, SamplingParams
from homellm.models.sampling import recommended_sampling
from homellm.planner.overrides import TensorOverride

DEFAULT_BATCH = 512


@dataclass(frozen=True)
class EngineOptions:
    """How to load a model: context per sequence, parallel sequences, CPU threads, GPU layers."""

    n_ctx: int = 4096
    n_threads: int | None = None  # None: every core we may use
    n_batch: int = DEFAULT_BATCH
    n_gpu_layers: int = 0  # the planner's placement; a CPU-only build ignores it
    n_parallel: int = 1  # sequences decoded together, each with its own n_ctx of KV cache
    tensor_overrides: tuple[TensorOverride, ...] = ()  # weights kept in another device's memory (experts in RAM)
    all_logits: bool = False  # logits for every position of a batch (evaluation), not only the last
    tensor_split: tuple[float, ...] = ()  # each offload device's share of the offloaded layers (RPC workers)
    kv_type: str = "F16"  # the KV cache's type, one for K and V ("Q8_0") or "K/V" ("Q8_0/F16")
    speculation: str = "off"  # "ngram" (from the text so far) or "draft" (a draft model): the decode loop verifies drafts
    draft_min: int = 0  # with speculation, draft at least this many proposed tokens even when it does not pay


def default_threads() -> int:
    """The cores this process may run on; llama-cpp-python's own default is half of them."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def _split_array(shares: tuple[float, ...]) -> ctypes.Array[ctypes.c_float] | None:
    """llama.cpp's tensor_split: one share per device, as long as llama_max_devices()."""
    if not shares:
        return None
    size = llama_cpp.llama_max_devices()
    if len(shares) > size:
        raise ModelLoadError(f"{len(shares)} devices to split across, and llama.cpp takes at most {size}",
                             hint="split the model across fewer workers")
    return (ctypes.c_float * size)(*shares)


class LlamaEngine:
    """A GGUF model loaded into llama.cpp, ready to tokenize and decode batches of sequences."""

    def __init__(self, path: Path, options: EngineOptions = EngineOptions()) -> None:
        self.path = Path(path)
        self.options = options
        kv_types = ggml_kv_types(options.kv_type)  # an unknown name is refused before anything loads
        threads = options.n_threads or default_threads()
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = options.n_gpu_layers
        overrides = OverrideArray(options.tensor_overrides) if options.tensor_overrides else None
        if overrides is not None:
            model_params.tensor_buft_overrides = overrides.pointer
        split = _split_array(options.tensor_split)
        if split is not None:
            model_params.tensor_split = split
        placed: dict[str, str] = {}
        self._model = load_model(self.path, model_params, placed=placed)
        self.placements = placed  # overridden tensors, by name, to the buffer llama.cpp put them in
        self.unmatched_overrides = unmatched(options.tensor_overrides, list(self.placements))
        self._ctx = self._new_context(options, threads, kv_types)
        self._own_batch: TokenBatch | None = None
        try:
            self._prepare_text(options)
        except BaseException:  # a template that does not compile: free what was made
            self.close()
            raise

    def _prepare_text(self, options: EngineOptions) -> None:
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        # llama.cpp may round the context up; requests get the size asked for.
        self.n_ctx = min(options.n_ctx, llama_cpp.llama_n_ctx_seq(self._ctx)) if options.n_ctx \
            else llama_cpp.llama_n_ctx_seq(self._ctx)
        self.n_slots = llama_cpp.llama_n_seq_max(self._ctx)
        self.n_batch = llama_cpp.llama_n_batch(self._ctx)
        self._vocab = self._model.vocab
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self._piece_buffer = ctypes.create_string_buffer(256)
        self._bench_pos = 0
        self.metadata: dict[str, str] = self._model.metadata()
        self.sampling_defaults = recommended_sampling(self.metadata)
        self._bos_text = self._special_text(llama_cpp.llama_vocab_bos(self._vocab))
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self.chat_template = ChatTemplate(
            self.metadata.get("tokenizer.chat_template"),
            bos_token=self._bos_text,
            eos_token=self._special_text(llama_cpp.llama_vocab_eos(self._vocab)),
        )

    def _new_context(self, options: EngineOptions, threads: int, kv_types: tuple[int, int]) -> llama_cpp.llama_context_p:
        n_parallel = max(1, options.n_parallel)
        n_ctx = options.n_ctx or self._model.n_ctx_train()
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx * n_parallel
        params.n_batch = params.n_ubatch = min(options.n_batch, params.n_ctx)
        params.n_seq_max = n_parallel
        # A KV cache per sequence: attention reads only its own sequence's cells,
        # and one sequence can never take the room of another.
        params.kv_unified = False
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        params.type_k, params.type_v = kv_types
        quantized_v = needs_flash_attention(options.kv_type)
        if quantized_v:
            params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        if options.all_logits:
            params.n_outputs_max = params.n_outputs_max_per_seq = 0  # 0: as many as the batch holds
        ctx = llama_cpp.llama_init_from_model(self._model.model, params)
        if not ctx and quantized_v:
            self._model.close()
            raise ModelLoadError(
                f"llama.cpp could not create a context with a {options.kv_type} KV cache for {self.path.name}: "
                "a quantized V cache needs flash attention, which this build or device may not have",
                hint="use --kv-type-v f16 (a quantized K cache alone needs no flash attention)",
            )
        if not ctx:
            self._model.close()
            raise ModelLoadError(
                f"llama.cpp could not create a context of {n_parallel} x {n_ctx} tokens for {self.path.name}",
                hint="serve it with a smaller --ctx or --parallel, or check free memory with `homellm plan`",
            )
        return ctx

    # Text

    def render_chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        """The prompt text for a conversation, by the model's own template (with OpenAI's `tools`
        list for templates that know tools)."""
        return self.chat_template.render(messages, add_generation_prompt=True, tools=tools)

    def tokenize(self, text: str) -> list[int]:
        """Prompt tokens; special tokens written in the text are parsed, BOS added once."""
        add_bos = self._add_bos and not (self._bos_text and text.startswith(self._bos_text))
        return self._model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def tokens_of(self, text: str) -> list[int]:
        """The tokens of text written inside a sequence (a close tag): special tokens parsed, no BOS."""
        return self._model.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    @property
    def adds_bos(self) -> bool:
        """Whether the model's prompts start with its BOS token."""
        return self._add_bos

    @property
    def bos_token(self) -> int:
        """The BOS token's id (-1 when the vocabulary has none)."""
        return llama_cpp.llama_vocab_bos(self._vocab)

    def piece(self, token: int) -> bytes:
        """The bytes a generated token stands for (special tokens render as nothing)."""
        n = llama_cpp.llama_token_to_piece(self._vocab, token, self._piece_buffer,
                                           len(self._piece_buffer), 0, False)
        if n < 0:
            self._piece_buffer = ctypes.create_string_buffer(-n)
            return self.piece(token)
        return self._piece_buffer.raw[:n]

    def token_text(self, token: int) -> bytes:
        """A token's text in the vocabulary, as stored (special tokens too); a draft model must agree on each."""
        return llama_cpp.llama_vocab_get_text(self._vocab, token) or b""

    @property
    def vocab_type(self) -> int:
        """llama.cpp's tokenizer kind (SentencePiece, BPE, WordPiece ...)."""
        return int(llama_cpp.llama_vocab_type(self._vocab))

    @property
    def eos_token(self) -> int:
        """The EOS token's id (-1 when the vocabulary has none)."""
        return llama_cpp.llama_vocab_eos(self._vocab)

    def is_end(self, token: int) -> bool:
        """Whether the token ends a turn (end of sequence, end of turn)."""
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def grammar(self, response_format: ResponseFormat) -> str | None:
        """The checked GBNF grammar that enforces a response format, or None for free text."""
        return grammar_for(response_format, self._vocab)

    def completion_budget(self, n_prompt: int, max_tokens: int | None, prompt_param: str = "messages",
                          cap_to_context: bool = False) -> int:
        """How many tokens may be generated; refuses what does not fit, never truncates.

        With `cap_to_context`, max_tokens is a cap (a terminal's), and the room left is the budget when smaller.
        """
        room = self.n_ctx - n_prompt
        if room <= 0:
            raise ContextLengthExceededError(
                f"the prompt is {n_prompt} tokens, and this model's context holds {self.n_ctx}",
                hint=f"shorten the {prompt_param}, or serve the model with a larger --ctx",
                param=prompt_param,
            )
        if max_tokens is None:
            return room
        if cap_to_context:
            return min(max_tokens, room)
        if max_tokens > room:
            raise ContextLengthExceededError(
                f"the prompt ({n_prompt} tokens) plus max_tokens ({max_tokens}) is more than "
                f"this model's context of {self.n_ctx} tokens",
                hint=f"ask for at most {room} tokens, or serve the model with a larger --ctx",
                param="max_tokens",
            )
        return max_tokens

    # Decoding, for the scheduler's decode loop

    def new_batch(self) -> TokenBatch:
        """A batch as large as one decode step may be."""
        return TokenBatch(self.n_batch)

    def decode(self, batch: TokenBatch) -> None:
        """Run the model over every token in the batch, filling the KV caches of their sequences."""
        status = llama_cpp.llama_decode(self._ctx, batch.raw)
        if status != 0:
            reason = "no room left in the KV cache" if status == 1 else f"status {status}"
            raise EngineError(f"llama.cpp could not decode a batch of {batch.n_tokens} tokens: {reason}",
                              hint="the request failed; the model keeps serving")

    def sampler(self, params: SamplingParams, grammar: str | None) -> Sampler:
        """A sampler chain for one request; the fields it leaves out take the model's defaults."""
        return Sampler(self._vocab, self.n_vocab, params.with_defaults(self.sampling_defaults), grammar, self.n_ctx)

    def sample(self, sampler: Sampler, index: int) -> int:
        """Sample the token after batch position `index` of the last decode."""
        return sampler.sample(self._ctx, index)

    def top_token(self, index: int) -> tuple[int, float]:
        """The likeliest token after batch position `index` of the last decode, and its probability
        (a draft model's greedy pick, with how sure it is)."""
        pointer = llama_cpp.llama_get_logits_ith(self._ctx, index)
        logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
        token = int(logits.argmax())
        top = logits[token]
        return token, float(1.0 / np.exp(logits - top).sum())

    def keep_prefix(self, seq: int, n: int) -> int:
        """Drop sequence `seq`'s cached tokens from position `n` on; returns how many stay.

        A cache that cannot be cut there (recurrent state, or a sliding window that
        has already let go of the first positions) is emptied instead.
        """
        if n > 0 and llama_cpp.llama_memory_seq_pos_min(self._memory, seq) <= 0 \
                and llama_cpp.llama_memory_seq_rm(self._memory, seq, n, -1):
            return n
        llama_cpp.llama_memory_seq_rm(self._memory, seq, -1, -1)
        return 0

    @property
    def can_drop_tail(self) -> bool:
        """Whether a sequence's newest cached tokens can be dropped (speculative decoding needs it); a
        recurrent state cannot be rolled back."""
        model = self._model.model
        return not (llama_cpp.llama_model_is_recurrent(model) or llama_cpp.llama_model_is_hybrid(model))

    def drop_tail(self, seq: int, n: int) -> None:
        """Drop sequence `seq`'s cached tokens from position `n` on (rejected drafts)."""
        if not llama_cpp.llama_memory_seq_rm(self._memory, seq, n, -1):
            raise EngineError(f"llama.cpp could not drop the cached tokens of sequence {seq} from position {n}",
                              hint="the request failed; the model keeps serving")

    def sequence_state_bytes(self, seq: int) -> int:
        """The bytes of sequence `seq`'s cached state as llama.cpp serializes it: its cells' keys and values
        at the cache's types (and a few fixed fields)."""
        return llama_cpp.llama_state_seq_get_size(self._ctx, seq)

    # Evaluation: every position's logits

    def logits(self, tokens: list[int]) -> np.ndarray:
        """The next-token logits after each of `tokens`, evaluated from an empty sequence 0, batch by batch.

        Needs an engine loaded with `all_logits`. Returns float32, shape (len(tokens), n_vocab).
        """
        if not self.options.all_logits:
            raise EngineError("this engine was loaded for generation, not evaluation",
                              hint="load it with EngineOptions(all_logits=True)")
        self.keep_prefix(0, 0)
        out = np.empty((len(tokens), self.n_vocab), dtype=np.float32)
        batch = self._own()
        for start in range(0, len(tokens), batch.capacity):
            chunk = tokens[start: start + batch.capacity]
            batch.clear()
            for offset, token in enumerate(chunk):
                batch.add(token, start + offset, 0, True)
            self.decode(batch)
            pointer = llama_cpp.llama_get_logits(self._ctx)
            out[start: start + len(chunk)] = np.ctypeslib.as_array(pointer, shape=(len(chunk), self.n_vocab))
        self.keep_prefix(0, 0)
        return out

    # Benchmarks: one sequence, fed directly

    def fill(self, context: list[int]) -> None:
        """Evaluate `context` into an empty cache (for benchmarks)."""
        self.keep_prefix(0, 0)
        self._bench_pos = 0
        self.time_eval(context)

    def time_eval(self, tokens: list[int], logits_all: bool = False) -> float:
        """Seconds to evaluate `tokens` on top of what is in the cache (for benchmarks); `logits_all`:
        with logits for each (as when drafts are verified), else for the last."""
        batch = self._own()
        start = time.perf_counter()
        for offset in range(0, len(tokens), batch.capacity):
            chunk = tokens[offset: offset + batch.capacity]
            batch.clear()
            batch.add_run(chunk, self._bench_pos, 0, logits_last=True, logits_all=logits_all)
            self.decode(batch)
            self._bench_pos += len(chunk)
        return time.perf_counter() - start

    def time_steps(self, token: int, steps: int) -> float:
        """Seconds for `steps` one-token decode steps on what is in the cache (for benchmarks).

        The token fed back is fixed: sampling takes no part in what is measured, the decode step does.
        """
        batch = self._own()
        start = time.perf_counter()
        for _ in range(steps):
            batch.clear()
            batch.add(token, self._bench_pos, 0, True)
            self.decode(batch)
            self._bench_pos += 1
        return time.perf_counter() - start

    def _own(self) -> TokenBatch:
        """The batch for sequence 0 fed directly (evaluation, benchmarks), made on first use."""
        if self._own_batch is None:
            self._own_batch = self.new_batch()
        return self._own_batch

    def close(self) -> None:
        """Free the context and the model now rather than when garbage is collected."""
        if self._own_batch is not None:
            self._own_batch.close()
            self._own_batch = None
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        self._model.close()

    def _special_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._model.token_to_piece(token, special=True).decode("utf-8", errors="replace")


def load_engine(path: Path, options: EngineOptions) -> LlamaEngine:
    """Load a GGUF file; the scheduler's default loader."""
    return LlamaEngine(path, options)
