"""Prometheus metrics of one scheduler: counters moved by the decode loops, gauges read when scraped."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Seconds; from a small model's first token on a fast machine to a large prompt on a slow one.
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TOKEN_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
FINISH_REASONS = ("stop", "length", "cancelled", "error")


@dataclass(frozen=True)
class LoopGauges:
    """What one model's decode loop is doing now."""

    model: str
    busy_slots: int
    slots: int
    queued: int
    decode_seconds: float = 0.0  # how long the llama_decode call running now has run (0: none runs)
    drafted: int = 0  # draft tokens verified since the model loaded (speculative decoding)
    accepted: int = 0  # of those, the ones the model accepted


class Metrics:
    """The scheduler's metrics in a registry of its own (no process-wide state)."""

    def __init__(self, gauges: Callable[[], list[LoopGauges]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("homellm_requests", "Requests finished, by model and finish reason",
                                ["model", "finish_reason"], registry=self.registry)
        self.rejected = Counter("homellm_requests_rejected", "Requests refused with 503 because the queue was full",
                                ["model"], registry=self.registry)
        self.prompt_tokens = Counter("homellm_prompt_tokens", "Prompt tokens evaluated (not counting cached ones)",
                                     ["model"], registry=self.registry)
        self.cached_tokens = Counter("homellm_prompt_cached_tokens", "Prompt tokens reused from a slot's cache",
                                     ["model"], registry=self.registry)
        self.generated_tokens = Counter("homellm_generated_tokens", "Tokens generated", ["model"],
                                        registry=self.registry)
        self.draft_tokens = Counter("homellm_draft_tokens", "Tokens drafted for speculative decoding and verified",
                                    ["model"], registry=self.registry)
        self.draft_accepted = Counter("homellm_draft_accepted_tokens", "Drafted tokens the model accepted",
                                      ["model"], registry=self.registry)
        self.time_to_first_token = Histogram(
            "homellm_time_to_first_token_seconds", "From the request queued to its first token",
            ["model"], buckets=TTFT_BUCKETS, registry=self.registry)
        self.time_per_token = Histogram(
            "homellm_time_per_output_token_seconds", "Between one generated token and the next",
            ["model"], buckets=TOKEN_BUCKETS, registry=self.registry)
        self.registry.register(_GaugeCollector(gauges))

    def for_model(self, model: str) -> "ModelSeries":
        """One model's series, bound to its label once: the decode loop updates them every token."""
        return ModelSeries(
            rejected=self.rejected.labels(model), prompt_tokens=self.prompt_tokens.labels(model),
            cached_tokens=self.cached_tokens.labels(model), generated_tokens=self.generated_tokens.labels(model),
            draft_tokens=self.draft_tokens.labels(model), draft_accepted=self.draft_accepted.labels(model),
            time_to_first_token=self.time_to_first_token.labels(model),
            time_per_token=self.time_per_token.labels(model),
            finished={reason: self.requests.labels(model, reason) for reason in FINISH_REASONS})


@dataclass(frozen=True)
class ModelSeries:
    """The series of one model (prometheus-client children with the model label set)."""

    rejected: Counter
    prompt_tokens: Counter
    cached_tokens: Counter
    generated_tokens: Counter
    draft_tokens: Counter
    draft_accepted: Counter
    time_to_first_token: Histogram
    time_per_token: Histogram
    finished: dict[str, Counter]  # by finish reason


class _GaugeCollector(Collector):
    def __init__(self, gauges: Callable[[], list[LoopGauges]]) -> None:
        self._gauges = gauges

    def collect(self) -> Iterable[Metric]:
        loops = self._gauges()
        busy = GaugeMetricFamily("homellm_busy_slots", "Slots serving a request", labels=["model"])
        slots = GaugeMetricFamily("homellm_slots", "Slots of the loaded model", labels=["model"])
        queued = GaugeMetricFamily("homellm_queue_depth", "Requests waiting for a slot", labels=["model"])
        for loop in loops:
            busy.add_metric([loop.model], loop.busy_slots)
            slots.add_metric([loop.model], loop.slots)
            queued.add_metric([loop.model], loop.queued)
        yield from (busy, slots, queued, GaugeMetricFamily("homellm_loaded_models", "Models loaded", value=len(loops)))
