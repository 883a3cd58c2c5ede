"""Slots: the sequences of a model's context, each serving one request at a time.

A slot remembers which tokens its KV cache holds after its request is done, so
the next request that starts with the same tokens (the earlier turns of a chat,
a shared system prompt) prefills only what is new.

llama.cpp's logits for a token depend on how its prompt was cut into decodes (by up
to 0.6 here on the built-in model: near ties flip), so a greedy request (temperature
0) would answer differently with and without a cache. Greedy prompts are therefore
evaluated in chunks of EXACT_CHUNK tokens at positions that are multiples of it,
each chunk decoded alone, and reuse only a cache made of such chunks: the same
greedy request gets the same answer whatever ran before it.

Known limit: what runs *beside* it still counts. Past 256 cached tokens, llama.cpp's CPU
flash attention computes a lone sequence's one-token step in chunks across threads
(its split-KV path) and a step shared with other sequences in one pass, which round
differently, so a long greedy answer can differ at a near tie between a quiet server
and a busy one.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from homellm.engine.sampling import Sampler
from homellm.engine.stops import StopScanner
from homellm.generation import SamplingParams
from homellm.scheduler.drafting import NgramDrafter
from homellm.scheduler.repetition import LoopGuard
from homellm.scheduler.speculation import Acceptance
from homellm.scheduler.stream import Generation
from homellm.scheduler.thinking import ThinkingBudget

EXACT_CHUNK = 128


@dataclass
class Request:
    """A checked request waiting for a slot: prompt tokens, sampling, grammar, token budget."""

    generation: Generation
    prompt: list[int]
    params: SamplingParams
    grammar: str | None
    budget: int
    keep_alive: float | None = None  # seconds the model stays loaded after this request; None: the default
    client: str = ""  # who asked (an HTTP client's address; "" in-process): the queue is fair between clients
    queued_at: float = field(default_factory=time.monotonic)

    @property
    def exact(self) -> bool:
        """Whether the answer must not depend on the cache: greedy sampling (temperature 0)."""
        return self.params.temperature == 0


class Slot:
    """One sequence of the context: the tokens in its cache, and the request it is serving."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.cached: list[int] = []  # tokens whose keys and values are in this sequence's cache
        self.exact_cached = 0  # of those, the leading ones evaluated in whole aligned chunks (EXACT_CHUNK)
        self.last_used = 0.0
        self.request: Request | None = None
        self.pending: list[int] = []  # prompt tokens still to prefill
        self.reused = 0  # prompt tokens found in the cache
        self.next_token: int | None = None  # sampled, to be decoded in the next step
        self.index = -1  # where this slot's logits are in the batch just decoded (the first of them, with drafts)
        self.drafter: NgramDrafter | None = None  # the prompt and answer so far, when the model speculates
        self.acceptance = Acceptance()
        self.proposal: list[int] = []  # what the drafter proposed this step, drafted or not
        self.drafts: list[int] = []  # the tokens drafted after next_token in the batch just decoded
        self.thinking: ThinkingBudget | None = None  # a reasoning model's thinking: its tokens, and its budget
        self.forced: list[int] = []  # tokens the loop wrote itself (a close tag), to decode after next_token
        self.generated = 0
        self.sampler: Sampler | None = None
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stops = StopScanner(())
        self.guard: LoopGuard | None = None
        self.started_at = 0.0
        self.first_token_at: float | None = None
        self.last_token_at = 0.0
        self.last_text = ""  # the text of the token last put in the answer, before stop strings are looked for

    @property
    def free(self) -> bool:
        """Whether the slot has no request."""
        return self.request is None

    def start(self, request: Request, sampler: Sampler, reused: int, ngram: bool = False,
              acceptance: Acceptance | None = None) -> None:
        """Take a request whose first `reused` prompt tokens are already in the cache; `ngram`:
        draft tokens from its prompt and answer; `acceptance`: the drafts' prior (else one in two)."""
        self.request = request
        self.drafter = NgramDrafter(request.prompt) if ngram else None
        self.acceptance = acceptance or Acceptance()
        self.proposal, self.drafts = [], []
        reasoning = request.params.reasoning
        self.thinking = ThinkingBudget(reasoning) if reasoning is not None else None
        self.forced = []
        self.sampler = sampler
        self.reused = reused
        self.pending = request.prompt[reused:]
        self.next_token = None
        self.generated = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stops = StopScanner(request.params.stop)
        self.guard = LoopGuard(request.params.loop_guard) if request.params.loop_guard else None
        self.started_at = time.monotonic()
        self.first_token_at = None

    def keep(self, n: int) -> None:
        """The cache now holds only its first `n` tokens."""
        self.cached = self.cached[:n]
        self.exact_cached = min(self.exact_cached, n)

    def evaluated(self, tokens: list[int], exact_chunk: bool) -> None:
        """`tokens` were decoded at the end of the cache; `exact_chunk`: as one aligned chunk, alone."""
        start = len(self.cached)
        self.cached.extend(tokens)
        if exact_chunk and start == self.exact_cached and start % EXACT_CHUNK == 0 and len(tokens) == EXACT_CHUNK:
            self.exact_cached = start + len(tokens)
        else:
            self.exact_cached = min(self.exact_cached, start)

    def next_exact_chunk(self, room: int) -> list[int]:
        """The pending prompt tokens up to the next multiple of EXACT_CHUNK (or the prompt's end), within
        a batch's `room` (a context smaller than a chunk cannot be exact)."""
        return self.pending[:min(room, EXACT_CHUNK - len(self.cached) % EXACT_CHUNK)]

    def timings(self) -> tuple[float, float]:
        """Seconds spent on the prompt (to the first token) and on generating since, until now."""
        now = time.monotonic()
        first = self.first_token_at if self.first_token_at is not None else now
        return first - self.started_at, now - first

    def finish(self) -> Request:
        """Let go of the request; the cache keeps what was decoded."""
        request = self.request
        assert request is not None
        if self.sampler is not None:
            self.sampler.close()
        self.request = self.sampler = None
        self.drafter = self.thinking = None
        self.proposal, self.drafts, self.forced = [], [], []
        self.pending = []
        self.next_token = None
        self.index = -1
        self.last_used = time.monotonic()
        return request


def shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two sequences have in common."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def pick_slot(free: Sequence[Slot], prompt: list[int], exact: bool = False) -> tuple[Slot, int]:
    """The free slot whose cache shares the longest prefix with the prompt, and that length.

    At least the prompt's last token is always decoded again, because its logits
    give the first new token. Among slots that share nothing, the least recently
    used is taken, so the caches other conversations may return to stay longest.
    An `exact` (greedy) request reuses only whole aligned chunks.
    """
    best, best_shared = None, -1
    for slot in free:
        shared = max(0, min(shared_prefix(slot.cached, prompt), len(prompt) - 1))
        if exact:
            shared = min(shared, slot.exact_cached) // EXACT_CHUNK * EXACT_CHUNK
        if shared > best_shared or (shared == best_shared and best is not None and slot.last_used < best.last_used):
            best, best_shared = slot, shared
    assert best is not None, "pick_slot needs a free slot"
    return best, best_shared
