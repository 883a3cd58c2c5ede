"""Perplexity of a model on a text, and the KL divergence of its next-token distribution from a reference's.

As llama.cpp's `llama-perplexity`: the tokens are cut into chunks of `ctx`, each chunk is
evaluated from an empty cache (starting with BOS for models that use one), and only its
second half is scored, so every scored token has at least ctx/2 tokens before it. Logits
come from the engine a batch at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from homellm.engine.llama import EngineOptions, LlamaEngine
from homellm.errors import InvalidRequestError
from homellm.planner.quants import kv_label, kv_pair

Progress = Callable[[int, int], None]  # chunks done, chunks in all
CHARS_PER_TOKEN_GUESS = 8  # English takes about 4; a text beginning too short for the tokens is doubled
CUT_MARGIN_TOKENS = 256  # tokens past the ones used, before a cut in the text: far more than one word


@dataclass(frozen=True)
class EvalResult:
    """Quality figures over the scored tokens; the KL fields are None without a reference."""

    ppl: float
    tokens: int
    chunks: int
    ctx: int
    ref_ppl: float | None = None
    kl_mean: float | None = None
    kl_p99: float | None = None
    kl_max: float | None = None
    top1_agreement: float | None = None
    kv_type: str = "F16"  # the evaluated model's KV cache; the reference's is F16


def evaluate(model: Path, text: str, ctx: int = 512, chunks: int | None = None, ref: Path | None = None,
             threads: int | None = None, progress: Progress | None = None, kv_type: str = "F16") -> EvalResult:
    """Perplexity of `model` on `text` and, with `ref`, KL(ref || model) at every scored position.

    `model` runs with a `kv_type` KV cache; the reference always with an F16 one. Without `ref`
    and with a quantized cache, the reference is `model` itself: the KL is the cache's cost.
    Both models stay loaded while the chunks run; they must share a vocabulary.
    """
    if chunks is not None and chunks < 1:
        raise InvalidRequestError(f"--chunks {chunks}: at least one chunk is needed", hint="use --chunks 1 or more",
                                  param="chunks")
    options = EngineOptions(n_ctx=ctx, n_threads=threads, n_batch=min(ctx, 512), all_logits=True)
    kv_type = kv_label(*kv_pair(kv_type))
    engine = LlamaEngine(model, replace(options, kv_type=kv_type))
    if ref is None and kv_type != "F16":
        ref = model
    reference = None
    try:
        reference = LlamaEngine(ref, options) if ref is not None else None
        if reference is not None and reference.n_vocab != engine.n_vocab:
            raise InvalidRequestError(f"{ref.name} has {reference.n_vocab} tokens in its vocabulary and "
                                      f"{model.name} {engine.n_vocab}", hint="compare quants of one model", param="ref")
        pieces = _chunks(_text_tokens(engine, text, ctx * chunks if chunks is not None else None), ctx, chunks)
        if engine.adds_bos:
            for piece in pieces:
                piece[0] = engine.bos_token
        return replace(_score(engine, reference, pieces, ctx, progress), kv_type=engine.options.kv_type)
    finally:
        engine.close()
        if reference is not None:
            reference.close()


def _text_tokens(engine: LlamaEngine, text: str, needed: int | None = None) -> list[int]:
    """The text's tokens without the BOS the tokenizer put in front (each chunk gets its own).

    With `needed`, only the first `needed` of them, from a beginning of the text long enough for
    those and a margin: the 465 KB built-in text took half a second to tokenize whole, for a
    `--chunks 1` that scores 512 tokens of it.
    """
    if needed is not None:
        size = max(needed, CUT_MARGIN_TOKENS) * CHARS_PER_TOKEN_GUESS  # never 0: a 0 would double forever
        while size < len(text):
            tokens = _tokenize_text(engine, text[:size])
            # Only the tokens near the cut can differ from the whole text's; the margin leaves them out.
            if len(tokens) >= needed + CUT_MARGIN_TOKENS:
                return tokens[:needed]
            size *= 2
    return _tokenize_text(engine, text)


def _tokenize_text(engine: LlamaEngine, text: str) -> list[int]:
    tokens = engine.tokenize(text)
    if engine.adds_bos and tokens and tokens[0] == engine.bos_token:
        return tokens[1:]
    return tokens


def _chunks(tokens: list[int], ctx: int, limit: int | None) -> list[list[int]]:
    if ctx < 16:
        raise InvalidRequestError(f"a context of {ctx} tokens is too short to score", hint="use --ctx 128 or more",
                                  param="ctx")
    count = len(tokens) // ctx
    if count == 0:
        raise InvalidRequestError(f"the text has {len(tokens)} tokens, fewer than one context window of {ctx}",
                                  hint="give a longer text, --builtin-text, or a smaller --ctx", param="text")
    if limit is not None:
        count = min(count, limit)
    return [tokens[i * ctx: (i + 1) * ctx] for i in range(count)]


def _score(engine: LlamaEngine, reference: LlamaEngine | None, pieces: list[list[int]], ctx: int,
           progress: Progress | None) -> EvalResult:
    first = ctx // 2
    nll: list[np.ndarray] = []
    ref_nll: list[np.ndarray] = []
    kl: list[np.ndarray] = []
    same_top: list[np.ndarray] = []
    for done, piece in enumerate(pieces):
        # The logits after position j predict token j + 1; llama-perplexity scores j = first .. ctx - 2.
        targets = np.asarray(piece[first + 1:], dtype=np.int64)
        logp = _log_softmax(engine.logits(piece)[first: ctx - 1])
        nll.append(-logp[np.arange(len(targets)), targets])
        if reference is not None:
            ref_logp = _log_softmax(reference.logits(piece)[first: ctx - 1])
            ref_nll.append(-ref_logp[np.arange(len(targets)), targets])
            kl.append(np.maximum((np.exp(ref_logp) * (ref_logp - logp)).sum(axis=1), 0.0))
            same_top.append(ref_logp.argmax(axis=1) == logp.argmax(axis=1))
        if progress:
            progress(done + 1, len(pieces))
    scored = np.concatenate(nll)
    result = EvalResult(ppl=float(np.exp(scored.mean())), tokens=int(scored.size), chunks=len(pieces), ctx=ctx)
    if reference is None:
        return result
    divergence = np.concatenate(kl)
    return replace(result, ref_ppl=float(np.exp(np.concatenate(ref_nll).mean())), kl_mean=float(divergence.mean()),
                   kl_p99=float(np.percentile(divergence, 99)), kl_max=float(divergence.max()),
                   top1_agreement=float(np.concatenate(same_top).mean()))


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
