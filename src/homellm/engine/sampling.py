"""Per-request sampler chains: llama.cpp's samplers, one chain per generating sequence."""

from __future__ import annotations

import random

import llama_cpp

from homellm.engine.grammar import GRAMMAR_ROOT
from homellm.generation import SamplingParams


class Sampler:
    """A llama.cpp sampler chain built from a request's parameters; owns and frees it.

    The grammar comes first in the chain, so the other samplers only ever see
    tokens that keep the output in shape.
    """

    def __init__(self, vocab: llama_cpp.llama_vocab_p, n_vocab: int, params: SamplingParams,
                 grammar: str | None, n_ctx: int) -> None:
        """`params` with every field filled in (`SamplingParams.with_defaults`)."""
        chain_params = llama_cpp.llama_sampler_chain_default_params()
        chain_params.no_perf = True
        self._chain = llama_cpp.llama_sampler_chain_init(chain_params)
        if params.repeat_penalty != 1.0 and params.repeat_last_n != 0:
            last_n = n_ctx if params.repeat_last_n < 0 else min(params.repeat_last_n, n_ctx)  # llama.cpp allocates it
            # Only the answer's own tokens count: a penalty on the prompt's words would keep the model
            # from copying a value out of a tool result or a document.
            self._add(llama_cpp.llama_sampler_init_penalties(n_vocab, last_n, params.repeat_penalty, 0.0, 0.0))
        if grammar is not None:
            # The grammar was parsed once when the request was checked, so this cannot be NULL.
            self._add(llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), GRAMMAR_ROOT.encode()))
        if params.temperature <= 0:
            self._add(llama_cpp.llama_sampler_init_greedy())
            return
        if params.top_k > 0:
            self._add(llama_cpp.llama_sampler_init_top_k(params.top_k))
        if params.top_p < 1.0:
            self._add(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0.0:
            self._add(llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
        self._add(llama_cpp.llama_sampler_init_temp(params.temperature))
        seed = params.seed if params.seed is not None else random.getrandbits(32)
        self._add(llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    def _add(self, sampler: llama_cpp.llama_sampler_p) -> None:
        llama_cpp.llama_sampler_chain_add(self._chain, sampler)  # the chain owns it from here

    def sample(self, ctx: llama_cpp.llama_context_p, index: int) -> int:
        """The next token from the logits at batch `index`; the chain records it (penalties, grammar)."""
        return llama_cpp.llama_sampler_sample(self._chain, ctx, index)

    def accept(self, token: int) -> None:
        """Record a token the loop put in the answer itself (not sampled): the grammar and penalties move past it."""
        llama_cpp.llama_sampler_accept(self._chain, token)

    def close(self) -> None:
        """Free the chain and its samplers."""
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None
