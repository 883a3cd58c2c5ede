"""An embedding model (a BERT-style encoder GGUF) loaded into llama.cpp: texts in, L2-normalised vectors out.

Many texts are encoded in one llama.cpp call, each as its own sequence; llama.cpp
pools every sequence's token states into one vector (mean pooling for
all-MiniLM-L6-v2, as sentence-transformers does) and the rows are normalised here.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import llama_cpp
import numpy as np

from homellm.engine.batch import TokenBatch
from homellm.engine.llama import default_threads
from homellm.engine.loading import load_model
from homellm.errors import ContextLengthExceededError, EngineError, ModelLoadError

if TYPE_CHECKING:
    from typing_extensions import Self

# Tokens per llama.cpp call. An encoder batch attends across all of its tokens under a mask,
# so larger batches cost more per token: on 2 cores 512 embeds ~1.3x faster than 2048.
DEFAULT_BATCH_TOKENS = 512
# Sequences per llama.cpp call: short texts (queries, titles) pack many to a batch.
MAX_SEQUENCES = 64
_POOLED = (llama_cpp.LLAMA_POOLING_TYPE_MEAN, llama_cpp.LLAMA_POOLING_TYPE_CLS, llama_cpp.LLAMA_POOLING_TYPE_LAST)


@dataclass(frozen=True)
class EmbedResult:
    """One vector per text, and the tokens the model read to make them."""

    vectors: np.ndarray  # float32, shape (n_texts, n_embd), rows of unit length
    prompt_tokens: int


class Embedder:
    """An encoder GGUF with its own llama.cpp context; threads take turns embedding."""

    def __init__(self, path: Path, n_threads: int | None = None,
                 max_batch_tokens: int = DEFAULT_BATCH_TOKENS) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self._model = load_model(self.path, llama_cpp.llama_model_default_params(),
                                 hint="check that the file is a complete GGUF embedding model")
        self.n_embd = self._model.n_embd()
        self.max_tokens = self._model.n_ctx_train()
        # A whole text must fit one batch: an encoder sees all of a sequence at once.
        self.max_batch_tokens = max(max_batch_tokens, self.max_tokens)
        self._lock = threading.Lock()
        self._ctx = self._new_context(n_threads or default_threads())
        self._memory = llama_cpp.llama_get_memory(self._ctx)  # NULL for encoders, which keep no cache
        self._vocab = self._model.vocab
        # The final special token ([SEP]) stays when a text is cut to fit.
        self._keeps_last = bool(llama_cpp.llama_vocab_get_add_sep(self._vocab)
                                or llama_cpp.llama_vocab_get_add_eos(self._vocab))
        self._batch: TokenBatch | None = TokenBatch(self.max_batch_tokens)

    def _new_context(self, threads: int) -> llama_cpp.llama_context_p:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = self.max_batch_tokens
        params.n_seq_max = MAX_SEQUENCES
        params.kv_unified = True  # every sequence may use the whole context, not a 1/64th share
        params.n_threads = params.n_threads_batch = threads
        params.embeddings = True
        params.pooling_type = self._pooling()
        params.attention_type = llama_cpp.LLAMA_ATTENTION_TYPE_NON_CAUSAL
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(self._model.model, params)
        if not ctx:
            self._model.close()
            raise ModelLoadError(f"llama.cpp could not create an embedding context for {self.name}",
                                 hint="check free memory, or load it with a smaller max_batch_tokens")
        return ctx

    def _pooling(self) -> int:
        """The model's own pooling when it names one that gives a vector per text, else mean."""
        arch = self._model.metadata().get("general.architecture", "")
        try:
            pooling = int(self._model.metadata().get(f"{arch}.pooling_type", ""))
        except ValueError:
            return llama_cpp.LLAMA_POOLING_TYPE_MEAN
        return pooling if pooling in _POOLED else llama_cpp.LLAMA_POOLING_TYPE_MEAN

    # Text

    def tokenize(self, text: str) -> list[int]:
        """The tokens the model reads for `text`, with the [CLS] and [SEP] it adds; `[SEP]` written in text is text."""
        self._check_open()
        return self._model.tokenize(text.encode("utf-8"), add_bos=True, special=False)

    def count_tokens(self, text: str) -> int:
        """How many tokens `tokenize` gives, special ones included."""
        return len(self.tokenize(text))

    # Embedding

    def embed(self, texts: Sequence[str], truncate: bool = True) -> EmbedResult:
        """L2-normalised vectors, one row per text, in order.

        A text longer than `max_tokens` is cut to its first tokens (keeping the
        closing [SEP]) with `truncate`, and refused otherwise.
        """
        with self._lock:  # also keeps close() from freeing the vocabulary while it is read
            inputs = [self._fit(index, self.tokenize(text), truncate) for index, text in enumerate(texts)]
            vectors = np.zeros((len(inputs), self.n_embd), dtype=np.float32)
            start = 0
            while start < len(inputs):
                end = self._pack(inputs, start)
                vectors[start:end] = self._encode(inputs[start:end])
                start = end
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.maximum(norms, 1e-12)  # an all-zero vector stays zero rather than NaN
        return EmbedResult(vectors=vectors, prompt_tokens=sum(len(tokens) for tokens in inputs))

    def _fit(self, index: int, tokens: list[int], truncate: bool) -> list[int]:
        if len(tokens) <= self.max_tokens:
            return tokens
        if not truncate:
            raise ContextLengthExceededError(
                f"input {index} is {len(tokens)} tokens, and {self.name} reads at most {self.max_tokens}",
                hint="split the text into shorter pieces, or allow truncation", param="input")
        if self._keeps_last:
            return tokens[:self.max_tokens - 1] + tokens[-1:]
        return tokens[:self.max_tokens]

    def _pack(self, inputs: list[list[int]], start: int) -> int:
        """The end of the run of texts from `start` that fits one batch (always at least one)."""
        end, used = start, 0
        while end < len(inputs) and end - start < MAX_SEQUENCES and used + len(inputs[end]) <= self.max_batch_tokens:
            used += len(inputs[end])
            end += 1
        return max(end, start + 1)

    def _encode(self, group: list[list[int]]) -> np.ndarray:
        """Pooled vectors (not normalised) of texts that fit one batch, each its own sequence."""
        batch = self._batch
        assert batch is not None
        batch.clear()
        for seq, tokens in enumerate(group):
            for pos, token in enumerate(tokens):
                batch.add(token, pos, seq, True)  # every token is an output: pooling reads them all
        if self._memory:  # a model that keeps a cache would mix this batch with the last one
            llama_cpp.llama_memory_clear(self._memory, True)
        run = llama_cpp.llama_decode if self._memory else llama_cpp.llama_encode
        status = run(self._ctx, batch.raw)
        if status != 0:
            raise EngineError(f"llama.cpp could not embed a batch of {batch.n_tokens} tokens: status {status}",
                              hint="the request failed; the model keeps serving")
        out = np.empty((len(group), self.n_embd), dtype=np.float32)
        for seq in range(len(group)):
            pointer = llama_cpp.llama_get_embeddings_seq(self._ctx, seq)
            if not pointer:
                raise EngineError(f"llama.cpp gave no pooled embedding for {self.name}",
                                  hint="the model has no pooling; it is not an embedding model")
            out[seq] = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)),
                                             shape=(self.n_embd,))
        return out

    # Lifetime

    def _check_open(self) -> None:
        if self._ctx is None:
            raise EngineError(f"the embedding model {self.name} is closed", hint="load it again")

    def close(self) -> None:
        """Free the context and the model now rather than when garbage is collected."""
        with self._lock:
            if self._batch is not None:
                self._batch.close()
                self._batch = None
            if self._ctx:
                llama_cpp.llama_free(self._ctx)
                self._ctx = None
                self._model.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
