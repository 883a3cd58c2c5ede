"""Continuous batching: one thread per model decodes every busy slot together, step by step.

Each step puts one token of every generating slot and chunks of pending prompts
into one batch (up to the context's batch size), decodes it once, samples each
slot with its own sampler chain, and hands the new text to the requests' event
loops, one hand-over per event loop per step.

With speculation on (`--spec ngram`, or `--draft MODEL`: scheduler/draft_model.py), a generating
slot may put drafted tokens after its next token, with logits for each; sampling them in order
with the slot's own chain and keeping them while each sample equals the draft gives the tokens,
and the random draws, that decoding one at a time would have given (speculative sampling for a
draft that is certain of its tokens: n-grams and a draft model's greedy picks are). The cache
then drops the rejected drafts.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from homellm.engine.llama import LlamaEngine
from homellm.errors import ServerBusyError
from homellm.generation import (
    Failed,
    Finished,
    FinishReason,
    GenerationEvent,
    TextDelta,
)
from homellm.planner.speculation import MAX_DRAFT
from homellm.scheduler.draft_model import DraftRequest, ModelDrafter
from homellm.scheduler.metrics import LoopGauges, Metrics
from homellm.scheduler.slots import Request, Slot, pick_slot, shared_prefix
from homellm.scheduler.speculation import (
    Acceptance,
    Candidate,
    DraftSeconds,
    Payoff,
    StepCosts,
    StepShape,
    acceptance_band,
    count_ubatches,
    explore_every,
    plan_drafts,
)
from homellm.scheduler.stream import Generation
from homellm.scheduler.waiting import WaitingRequests

log = logging.getLogger(__name__)

IDLE_WAIT_SECONDS = 0.5
# While a draft model's drafts do not pay (or before its steps are measured), a slot still drafts two
# tokens now and then, to measure again (n-grams measure acceptance for free): at least this many steps
# apart, and as far apart as keeps those drafts (each starts with the draft catching up on the slot's
# text) under EXPLORE_SHARE of the decode time. Once in 32 steps cost 10-35% on two cores.
DRAFT_EXPLORE_EVERY = 64
RETRY_AFTER_SECONDS = 2


class DecodeLoop:
    """The slots of one loaded model, the queue in front of them, and the thread that runs them."""

    def __init__(self, name: str, engine: LlamaEngine, max_queue: int, metrics: Metrics,
                 on_done: Callable[[Request], None], drafter: ModelDrafter | None = None) -> None:
        self.name = name
        self._engine = engine
        self._max_queue = max_queue
        self._metrics = metrics.for_model(name)
        self._on_done = on_done
        self._slots = [Slot(seq) for seq in range(engine.n_slots)]
        self._waiting = WaitingRequests()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._batch = engine.new_batch()
        self._outbox: list[tuple[Generation, GenerationEvent]] = []
        self._decode_started: float | None = None  # set while llama_decode runs: a stuck one shows its age
        self._exact_last = False  # the last step was a greedy prompt's chunk alone: the next is everyone's
        self._drafter = drafter
        wanted = engine.options.speculation == "ngram" or drafter is not None
        self._speculate = wanted and engine.can_drop_tail
        if wanted and not self._speculate:
            log.warning("%s keeps a recurrent state, which cannot drop rejected drafts: speculation is off", name)
        self._since_drafted = 0  # steps since the draft model last drafted: it drafts a little now and then to measure
        self._explore_seconds = 0.0  # what the draft model's drafts took the last time it started again
        self._acceptance = Acceptance()  # of the draft model's drafts, all slots: a new slot starts from it
        self._costs = StepCosts()
        self._payoff = Payoff()
        self._band: int | None = None  # the acceptance band of this step's drafts; None: no drafts
        self.drafted = self.accepted = 0  # draft tokens verified, and accepted, since the model loaded

    # Called from other threads

    def submit(self, request: Request) -> None:
        """Queue a request; `ServerBusyError` when the queue is full and its client has a fair share of it.

        A client with fewer requests waiting than the busiest one takes the place of that client's
        newest, which is answered 503 instead."""
        with self._lock:
            victim = self._make_room(request.client)
            self._waiting.push(request)
        self._wake.set()
        if victim is not None:
            self._metrics.rejected.inc()
            busy = self._busy_error(f"{self.name} is busy and this client has the most requests waiting")
            try:
                victim.generation.loop.call_soon_threadsafe(victim.generation.deliver, Failed(busy))
            except RuntimeError:  # that event loop has closed: its reader is gone
                victim.generation.cancel()
            self._on_done(victim)

    def refuse_if_full(self, client: str = "") -> None:
        """`ServerBusyError` now if a request of this client would be refused, before the caller spends time
        preparing it (rendering and tokenizing a prompt cost about a millisecond: 2,000 at once, two seconds)."""
        with self._lock:
            if self._full() and self._waiting.busiest_above(client) is None:
                self._refuse()

    def _make_room(self, client: str) -> Request | None:
        """Nothing when there is room; else the busiest client's newest request, taken out of the queue
        for this client's; `ServerBusyError` when this client has as many waiting as any other."""
        if not self._full():
            return None
        busiest = self._waiting.busiest_above(client)
        if busiest is None:
            self._refuse()
        return self._waiting.drop_newest(busiest)

    def _full(self) -> bool:
        if self._stopping.is_set():
            raise ServerBusyError(f"{self.name} is being unloaded", hint="send the request again", retry_after=1)
        free = sum(slot.free for slot in self._slots)  # read without the loop's help: may be a step old
        return len(self._waiting) >= self._max_queue + free

    def _refuse(self) -> NoReturn:
        self._metrics.rejected.inc()
        raise self._busy_error(
            f"{self.name} is busy: {len(self._slots)} requests running and {len(self._waiting)} waiting")

    def _busy_error(self, message: str) -> ServerBusyError:
        return ServerBusyError(message, retry_after=RETRY_AFTER_SECONDS,
                               hint=f"retry in {RETRY_AFTER_SECONDS} s, or serve with a larger --parallel or --queue")

    def gauges(self) -> LoopGauges:
        """Busy slots and queue depth now."""
        busy = sum(not slot.free for slot in self._slots)
        started = self._decode_started
        running = time.monotonic() - started if started is not None else 0.0
        return LoopGauges(self.name, busy, len(self._slots), len(self._waiting), running, self.drafted, self.accepted)

    def stop(self) -> None:
        """Ask the loop to end: running and waiting requests finish as cancelled."""
        self._stopping.set()
        self._wake.set()

    # The decode thread

    def run(self) -> None:
        """Decode until stopped; runs on the model's own thread."""
        try:
            while not self._stopping.is_set():
                try:
                    self._admit()
                    if not self._step():
                        self._wake.wait(IDLE_WAIT_SECONDS)
                        self._wake.clear()
                except Exception as exc:  # a bug must fail the requests at hand, not stop the model
                    log.exception("decode loop of %s failed", self.name)
                    for slot in self._slots:
                        if slot.request is not None:
                            self._fail(slot, exc)
                self._flush()
        finally:
            with self._lock:
                self._stopping.set()  # whatever ended the loop, nothing more may queue
            self._cancel_all()
            self._flush()
            self._batch.close()
            if self._drafter is not None:
                self._drafter.close()

    def _admit(self) -> None:
        """Give waiting requests the free slots, each the one whose cache serves it best; a slot goes to
        the client with the fewest requests running."""
        free = [slot for slot in self._slots if slot.free]
        running = collections.Counter(slot.request.client for slot in self._slots if slot.request is not None)
        while free:
            with self._lock:
                request = self._waiting.pop(running)
            if request is None:
                return
            if request.generation.cancelled:
                self._emit(request.generation, Finished("cancelled", len(request.prompt), 0))
                self._on_done(request)
                continue
            slot, shared = pick_slot(free, request.prompt, request.exact)
            free.remove(slot)
            try:
                reused = self._engine.keep_prefix(slot.seq, shared)
                slot.keep(reused)
                slot.start(request, self._engine.sampler(request.params, request.grammar), reused,
                           ngram=self._speculate and self._drafter is None,
                           acceptance=self._acceptance.carried() if self._drafter else None)
            except Exception as exc:  # this request fails; the others go on
                log.exception("starting a request on %s failed", self.name)
                slot.keep(0)
                self._emit(request.generation, Failed(exc))
                self._on_done(request)
                continue
            self._metrics.cached_tokens.inc(reused)
            running[request.client] += 1

    def _step(self) -> bool:
        """One decode: a greedy prompt's next aligned chunk alone, or every generating slot's next token
        with the other prompts in the room left (the two take turns); False when there was nothing to do."""
        self._batch.clear()
        began = time.monotonic()  # drafting with a model is part of what the step costs
        for slot in self._slots:
            if slot.request is not None and slot.request.generation.cancelled:
                self._finish(slot, "cancelled")
        exact = min((s for s in self._slots if s.request is not None and s.request.exact and s.pending),
                    key=lambda s: s.request.queued_at, default=None)  # type: ignore[union-attr]
        if exact is not None and not (self._exact_last and self._other_work()):
            self._exact_last = True
            busy = [self._add_prompt(exact, exact.next_exact_chunk(self._batch.room), exact_chunk=True)]
        else:
            self._exact_last = False
            busy = self._add_tokens_and_prompts()
        if not busy:
            return False
        batch = self._batch
        self._decode_started = started = time.monotonic()
        try:
            self._engine.decode(batch)
        except Exception as exc:
            log.exception("decode failed on %s", self.name)
            for slot in busy:
                self._fail(slot, exc)
            return True
        finally:
            self._decode_started = None
        now = time.monotonic()
        # Only a step of generating slots alone (no prompt in it) tells what drafting changes.
        generating = self._speculate and all(slot.generated > 0 for slot in busy)
        before = sum(slot.generated for slot in busy) if generating else 0
        for slot in busy:
            if slot.index >= 0:
                self._advance(slot, now)
        if self._speculate:
            self._costs.observe(StepShape(count_ubatches(batch.runs), batch.n_tokens, batch.n_outputs), now - started)
            if generating:
                self._payoff.record(len(busy), self._band, sum(s.generated for s in busy) - before, now - began)
        return True

    def _other_work(self) -> bool:
        """Whether a slot is generating or has a sampled prompt to evaluate: work a greedy prompt takes turns with."""
        return any(s.request is not None and (s.next_token is not None or (s.pending and not s.request.exact))
                   for s in self._slots)

    def _add_tokens_and_prompts(self) -> list[Slot]:
        """Every generating slot's next token (and its draft), then prompts (not greedy ones) in the room left."""
        busy = [slot for slot in self._slots if slot.request is not None and slot.next_token is not None]
        drafts = {} if not self._speculate else self._draft_by_model(busy) if self._drafter else self._plan_drafts(busy)
        for slot in busy:
            assert slot.next_token is not None
            if slot.forced:  # tokens the loop wrote: known, so no logits before the last
                tokens, slot.forced = [slot.next_token, *slot.forced], []
                slot.index = self._batch.add_run(tokens, len(slot.cached), slot.seq, logits_last=True)
            else:
                slot.drafts = slot.proposal[:drafts.get(slot.seq, 0)]
                tokens = [slot.next_token, *slot.drafts]
                slot.index = self._batch.add_run(tokens, len(slot.cached), slot.seq, True, logits_all=True) \
                    - len(slot.drafts)
            slot.evaluated(tokens, exact_chunk=False)
        for slot in self._slots:  # prompts fill the room the generating slots leave
            if slot.request is None or not slot.pending or slot.request.exact or self._batch.room == 0:
                continue
            busy.append(self._add_prompt(slot, slot.pending[:self._batch.room], exact_chunk=False))
        return busy

    def _plan_drafts(self, busy: list[Slot]) -> dict[int, int]:
        """Each generating slot's proposal (kept for measuring acceptance), and how many of its tokens
        to draft this step, by sequence."""
        share = (self._batch.capacity - len(busy)) // max(1, len(busy))
        candidates = []
        for slot in busy:
            assert slot.drafter is not None
            slot.proposal = slot.drafter.propose(self._draft_limit(slot, share)) if not slot.forced else []
            candidates.append(Candidate(slot.seq, tuple(slot.proposal), slot.acceptance.rate))
        return self._checked_plan(candidates)

    def _draft_by_model(self, busy: list[Slot]) -> dict[int, int]:
        """Plan each generating slot's draft size from its acceptance and what the two models' steps cost,
        then have the draft model make them (it stops early where unsure); drafted tokens by sequence.
        While drafting does not pay, a slot still drafts two tokens now and then, to measure again; after
        a pause, drafting starts again no more often than that (unless `draft_min`)."""
        drafter = self._drafter
        assert drafter is not None
        if not busy:
            return {}
        share = (self._batch.capacity - len(busy)) // len(busy)
        limits = {slot.seq: 0 if slot.forced else self._draft_limit(slot, share) for slot in busy}
        candidates = [Candidate(slot.seq, (0,) * max(0, limits[slot.seq]), slot.acceptance.rate) for slot in busy]
        self._band = None
        since = self._since_drafted + 1  # steps since the last one that drafted, this one counted
        due = since >= self._explore_after(busy)
        # After a pause, starting again costs a catch-up on every step since: only as often as measuring.
        may_start = since == 1 or due or self._engine.options.draft_min
        plan = self._checked_plan(candidates, drafter.draft_seconds) if drafter.costs.ready and may_start else {}
        if not plan and due:
            best = max((c for c in candidates if c.proposal), key=lambda c: c.rate, default=None)
            if best is not None:
                plan = {best.seq: min(2, len(best.proposal))}
                self._band = acceptance_band(best.rate)
        self._since_drafted = 0 if plan else since
        if not plan:
            return {}
        requests = [DraftRequest(slot.seq, [*slot.cached, slot.next_token], plan[slot.seq])  # type: ignore[list-item]
                    for slot in busy if slot.seq in plan]
        started = time.monotonic()
        try:
            made = drafter.propose(requests)
        except Exception:  # drafts only speed answers up: without them the step goes on
            log.exception("the draft model %s failed to draft for %s", drafter.name, self.name)
            return {}
        if since > 1:
            self._explore_seconds = time.monotonic() - started
        for slot in busy:
            slot.proposal = made.get(slot.seq, [])
        return {seq: len(tokens) for seq, tokens in made.items()}

    def _explore_after(self, busy: list[Slot]) -> int:
        """Steps without drafting after which the draft model drafts a little to measure again."""
        drafter = self._drafter
        assert drafter is not None
        if self._engine.options.draft_min and not drafter.costs.ready:
            return 1  # `draft_min` drafts whatever it costs: from the first step, before anything is measured
        if not self._costs.ready:
            return DRAFT_EXPLORE_EVERY
        runs = [(slot.seq, 1) for slot in busy]
        step = self._costs.predict(StepShape(count_ubatches(runs), len(runs), len(runs)))
        return explore_every(self._explore_seconds, step, DRAFT_EXPLORE_EVERY)

    def _draft_limit(self, slot: Slot, share: int) -> int:
        """The most tokens a slot may draft: never past the context, the request's budget or the slot's
        share of the batch."""
        request = slot.request
        assert request is not None
        return min(MAX_DRAFT, share, self._engine.n_ctx - len(slot.cached) - 1, request.budget - slot.generated - 1)

    def _checked_plan(self, candidates: list[Candidate], drafting: DraftSeconds | None = None) -> dict[int, int]:
        """The fastest plan for these candidates, unless drafts of its acceptance band have lately yielded
        less than plain steps (then only what `draft_min` asks for)."""
        plan = plan_drafts(candidates, self._costs, self._engine.options.draft_min, drafting)
        self._band = None
        if plan:
            rates = [c.rate for c in candidates if c.seq in plan]
            band = acceptance_band(sum(rates) / len(rates))
            if not self._payoff.allows(len(candidates), band):  # such drafts have yielded less than plain steps lately
                plan = plan_drafts(candidates, StepCosts(), self._engine.options.draft_min)
            self._band = band if plan else None
        return plan

    def _add_prompt(self, slot: Slot, chunk: list[int], exact_chunk: bool) -> Slot:
        """Put the next `chunk` of a slot's prompt in the batch (logits for its last token if it ends it)."""
        done = len(chunk) == len(slot.pending)
        slot.index = self._batch.add_run(chunk, len(slot.cached), slot.seq, logits_last=done)
        slot.evaluated(chunk, exact_chunk)
        slot.pending = slot.pending[len(chunk):]
        self._metrics.prompt_tokens.inc(len(chunk))
        if not done:
            slot.index = -1
        return slot

    def _advance(self, slot: Slot, now: float) -> None:
        """Sample the slot's next token (and verify its draft) and turn them into text, or finish the request."""
        assert slot.request is not None and slot.sampler is not None
        drafts, proposal = slot.drafts, slot.proposal
        slot.drafts, slot.proposal = [], []
        after = len(slot.cached) - len(drafts)  # the cache's length after the token decoded before the drafts
        try:
            tokens = self._verify(slot, drafts)
        except Exception as exc:
            self._fail(slot, exc)
            return
        accepted = shared_prefix(tokens, drafts)
        if drafts:
            self.drafted += len(drafts)
            self.accepted += accepted
            self._metrics.draft_tokens.inc(len(drafts))
            self._metrics.draft_accepted.inc(accepted)
            slot.acceptance.record(accepted, accepted < len(drafts))
            if self._drafter is not None:
                self._acceptance.record(accepted, accepted < len(drafts))
            if not self._drop_after(slot, after + accepted):
                return
        elif proposal:  # not drafted: measure whether it would have been right, for free
            slot.acceptance.record(int(tokens[0] == proposal[0]), tokens[0] != proposal[0])
        interval = (now - slot.last_token_at) / len(tokens)
        for i, token in enumerate(tokens):
            if not self._take(slot, token, now, interval):
                return
            if slot.forced:  # the loop closed the thinking after this token: the drafts after it are void
                self._drop_after(slot, after + i)
                return

    def _drop_after(self, slot: Slot, keep: int) -> bool:
        """Keep the slot's first `keep` cached tokens (drop rejected drafts); False when that failed the request."""
        if keep >= len(slot.cached):
            return True
        try:
            self._engine.drop_tail(slot.seq, keep)
        except Exception as exc:
            self._fail(slot, exc)
            return False
        slot.keep(keep)
        return True

    def _verify(self, slot: Slot, drafts: list[int]) -> list[int]:
        """The tokens sampled at the slot's logits in order, while each equals the token drafted there:
        the accepted drafts and one more of the model's own."""
        assert slot.sampler is not None
        tokens = []
        for i in range(len(drafts) + 1):
            token = self._engine.sample(slot.sampler, slot.index + i)
            tokens.append(token)
            if i == len(drafts) or token != drafts[i] or self._engine.is_end(token):
                break
        return tokens

    def _take(self, slot: Slot, token: int, now: float, interval: float) -> bool:
        """Turn one sampled token into text; False when it finished the request."""
        request = slot.request
        assert request is not None
        if slot.first_token_at is None:
            slot.first_token_at = now
            self._metrics.time_to_first_token.observe(now - request.queued_at)
        else:
            self._metrics.time_per_token.observe(interval)
        slot.last_token_at = now
        if self._engine.is_end(token):
            self._finish(slot, "stop")
            return False
        if not self._write(slot, token):
            return False
        if slot.thinking is not None and slot.thinking.feed(slot.last_text) and not self._close_thinking(slot):
            return False
        slot.next_token = token
        return True

    def _write(self, slot: Slot, token: int) -> bool:
        """Put a token (sampled or written by the loop) in the answer; False when that finished the request."""
        request = slot.request
        assert request is not None
        slot.generated += 1
        if slot.drafter is not None:
            slot.drafter.extend((token,))
        slot.last_text = slot.decoder.decode(self._engine.piece(token))
        text = slot.stops.feed(slot.last_text)
        if text:
            self._emit(request.generation, TextDelta(text))
        if slot.stops.stopped:
            self._finish(slot, "stop")
        elif slot.guard is not None and slot.guard.feed(token):
            log.info("%s: ended an answer after %d tokens, repeating a span of %d tokens %d times (loop guard)",
                     self.name, slot.generated, slot.guard.span, request.params.loop_guard)
            self._finish(slot, "length", looped=True)
        elif slot.generated >= request.budget:
            self._finish(slot, "length")
        else:
            return True
        return False

    def _close_thinking(self, slot: Slot) -> bool:
        """The reasoning budget is spent: write the close tag (decoded after the slot's next token, recorded
        by its sampler so a grammar expects the answer next); False when that finished the request."""
        assert slot.sampler is not None and slot.request is not None and slot.request.params.reasoning is not None
        for token in self._engine.tokens_of(slot.request.params.reasoning.close_tag):
            slot.sampler.accept(token)
            slot.forced.append(token)
            if not self._write(slot, token):
                return False
        return True

    def _finish(self, slot: Slot, reason: FinishReason, looped: bool = False) -> None:
        if not slot.stops.stopped and reason != "cancelled":
            rest = slot.stops.feed(slot.decoder.decode(b"", final=True)) + slot.stops.flush()
            if rest:
                self._emit(slot.request.generation, TextDelta(rest))  # type: ignore[union-attr]
        generated, reused, stop_string = slot.generated, slot.reused, slot.stops.matched
        thought = slot.thinking.spent if slot.thinking is not None else 0
        prompt_seconds, decode_seconds = slot.timings()
        request = slot.finish()  # a prompt cut short leaves in the cache only what was decoded
        self._emit(request.generation, Finished(reason, len(request.prompt), generated, reused, looped,
                                                prompt_seconds, decode_seconds, stop_string, thought))
        self._metrics.finished[reason].inc()
        self._metrics.generated_tokens.inc(generated)
        self._on_done(request)

    def _fail(self, slot: Slot, exc: Exception) -> None:
        # What this slot's cache holds is unknown after a failed decode: empty it.
        self._engine.keep_prefix(slot.seq, 0)
        slot.keep(0)
        request = slot.finish()
        self._emit(request.generation, Failed(exc))
        self._metrics.finished["error"].inc()
        self._on_done(request)

    def _cancel_all(self) -> None:
        for slot in self._slots:
            if slot.request is not None:
                self._finish(slot, "cancelled")
        with self._lock:
            waiting = self._waiting.drain()
        for request in waiting:
            self._emit(request.generation, Finished("cancelled", len(request.prompt), 0))
            self._on_done(request)

    def _emit(self, generation: Generation, event: GenerationEvent) -> None:
        self._outbox.append((generation, event))

    def _flush(self) -> None:
        """Hand this step's events over, one call per event loop."""
        if not self._outbox:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Generation, GenerationEvent]]] = {}
        for generation, event in self._outbox:
            by_loop.setdefault(generation.loop, []).append((generation, event))
        self._outbox = []
        for loop, events in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, events)
            except RuntimeError:  # that event loop has closed: its readers are gone
                for generation, _ in events:
                    generation.cancel()


def _deliver(events: list[tuple[Generation, GenerationEvent]]) -> None:
    for generation, event in events:
        generation.deliver(event)
