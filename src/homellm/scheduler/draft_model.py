"""Drafts for speculative decoding from a second, smaller model with the target's vocabulary.

The draft model keeps a KV cache per sequence, like the target, and follows each slot's
text lazily: when a slot drafts, the draft's cache is cut back to what it shares with the
slot's tokens and the rest is decoded, then the draft model picks its likeliest token step
after step, for every drafting slot in one decode per step. A slot stops drafting where the
draft model is unsure (its top token below MIN_CONFIDENCE), as llama-server's `--draft-p-min`.
Drafts are greedy, hence certain of their tokens: verifying them with the target's own
sampler keeps the target's answer (see loop.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from homellm.engine.batch import TokenBatch
from homellm.engine.llama import LlamaEngine
from homellm.scheduler.speculation import StepCosts, StepShape, count_ubatches

MIN_CONFIDENCE = 0.75  # llama-server's --draft-p-min default
# The most tokens the draft catches up on at once: past that (a new prompt, or many steps without
# drafting), its cache starts again from the slot's last CATCH_UP_WINDOW tokens. On two CPU cores the
# draft's prompt processing cost a fifth of a target step per token, so catching up on 64 steps
# without drafting cost 13-20% of the decode rate (docs/performance.md); the drafts see less context.
CATCH_UP_WINDOW = 128


@dataclass(frozen=True)
class DraftRequest:
    """One slot's wish: its sequence, every token its target has or is about to decode, and how many to draft."""

    seq: int
    context: list[int]
    size: int


class ModelDrafter:
    """A loaded draft model serving every slot of a target's decode loop."""

    def __init__(self, engine: LlamaEngine, name: str, window: int = CATCH_UP_WINDOW) -> None:
        self.engine = engine
        self.name = name
        self.window = window
        self._cached: dict[int, list[int]] = {seq: [] for seq in range(engine.n_slots)}
        self._start: dict[int, int] = {seq: 0 for seq in range(engine.n_slots)}  # the context index of _cached[0]
        self._batch = engine.new_batch()
        self.costs = StepCosts()  # seconds per draft decode step, by shape

    def draft_seconds(self, sizes: Sequence[tuple[int, int]]) -> float:
        """Seconds expected to draft `sizes` (sequence, tokens): one decode per drafted token, each
        with the slots still drafting (the first also takes each slot's newest token)."""
        seconds = 0.0
        for step in range(1, max((k for _, k in sizes), default=0) + 1):
            runs = [(seq, 1) for seq, k in sorted(sizes) if k >= step]
            seconds += self.costs.predict(StepShape(count_ubatches(runs), len(runs), len(runs)))
        return seconds

    def propose(self, requests: Sequence[DraftRequest]) -> dict[int, list[int]]:
        """Each requested slot's draft, by sequence: up to `size` tokens, fewer where the draft model is unsure."""
        wanted = [r for r in requests if r.size > 0 and r.context]
        drafts: dict[int, list[int]] = {r.seq: [] for r in requests}
        if not wanted:
            return drafts
        index = self._catch_up(wanted)
        sizes = {r.seq: r.size for r in wanted}
        while index:
            batch = self._batch
            batch.clear()
            following: dict[int, int] = {}
            for seq, i in index.items():
                token, confidence = self.engine.top_token(i)
                if confidence < MIN_CONFIDENCE or self.engine.is_end(token):
                    continue
                drafts[seq].append(token)
                if len(drafts[seq]) < sizes[seq]:
                    following[seq] = batch.add(token, len(self._cached[seq]), seq, True)
                    self._cached[seq].append(token)
            if following:
                self._decode(batch)
            index = following
        return drafts

    def following(self, seq: int) -> int:
        """How many of a slot's first tokens the draft's cache leaves out (it starts again from a window)."""
        return self._start[seq]

    def _catch_up(self, wanted: Sequence[DraftRequest]) -> dict[int, int]:
        """Decode what each slot's context has beyond the draft's cache (at least its last token, whose
        logits give the first draft; at most the last `window` tokens); the batch positions of those
        logits, by sequence. A slot whose new tokens the draft's vocabulary lacks gets none."""
        pending: dict[int, list[int]] = {}
        for request in wanted:
            seq, context = request.seq, request.context
            start, cached = self._start[seq], self._cached[seq]
            ahead = len(context) - start  # the context's tokens from where the draft's cache starts
            keep = min(common_prefix(cached, context[start:]), ahead - 1) if ahead > 0 else 0
            if ahead <= 0 or ahead - keep > self.window:
                start, keep = max(0, len(context) - self.window), 0
            keep = self.engine.keep_prefix(seq, keep)
            self._start[seq], self._cached[seq] = start, cached[:keep]
            new = context[start + keep:]
            if max(new) < self.engine.n_vocab:
                pending[seq] = new
        if not pending:
            return {}
        batch = self._batch
        if sum(len(tokens) for tokens in pending.values()) > batch.capacity:
            # A prompt to catch up on: all but the last tokens first, in as many decodes as it takes, so
            # that every slot's logits come from the one last decode.
            self._decode_unmeasured({seq: tokens[:-1] for seq, tokens in pending.items()})
            pending = {seq: tokens[-1:] for seq, tokens in pending.items()}
        batch.clear()
        index = {}
        for seq, tokens in pending.items():
            index[seq] = batch.add_run(tokens, len(self._cached[seq]), seq, logits_last=True)
            self._cached[seq].extend(tokens)
        self._decode(batch)
        return index

    def _decode_unmeasured(self, pending: dict[int, list[int]]) -> None:
        batch = self._batch
        pending = {seq: tokens for seq, tokens in pending.items() if tokens}
        while pending:
            batch.clear()
            for seq in list(pending):
                if batch.room == 0:
                    break
                chunk = pending[seq][:batch.room]
                batch.add_run(chunk, len(self._cached[seq]), seq, logits_last=False)
                self._cached[seq].extend(chunk)
                pending[seq] = pending[seq][len(chunk):]
                if not pending[seq]:
                    del pending[seq]
            self._decode(batch, measure=False)

    def _decode(self, batch: TokenBatch, measure: bool = True) -> None:
        started = time.monotonic()
        try:
            self.engine.decode(batch)
        except Exception:
            for seq in {seq for seq, _ in batch.runs}:  # what the failed decode left is unknown
                self.engine.keep_prefix(seq, 0)
                self._cached[seq] = []
            raise
        if measure:
            self.costs.observe(StepShape(count_ubatches(batch.runs), batch.n_tokens, batch.n_outputs),
                               time.monotonic() - started)

    def close(self) -> None:
        """Free the draft model's batch and the model."""
        self._batch.close()
        self.engine.close()


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two lists share, by comparing slices (C speed: a slot's context is long and
    differs from the draft's cache only near its end)."""
    low, high = 0, min(len(a), len(b))
    if a[:high] == b[:high]:
        return high
    high -= 1  # the whole of the shorter one differs somewhere
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low
