"""Where a model goes when it loads: the planner's fit for this machine, in llama.cpp's terms.

One `Placement` plans every load of a server or a terminal session, the model given at
start and the ones loaded on request alike: its context, the layers on the GPUs, the
experts kept in system RAM, and the memory the scheduler budgets for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from homellm.config import DEFAULT_CTX
from homellm.engine.llama import EngineOptions
from homellm.engine.probe import probe_model_file
from homellm.errors import DoesNotFitError, InvalidRequestError
from homellm.hardware.types import Hardware
from homellm.models.drafts import draft_refusal
from homellm.models.gguf import ENCODER_ARCHITECTURES
from homellm.models.resolve import ModelRef, facts_of, resolve_model
from homellm.models.shape import shape_from_facts
from homellm.models.store import Store
from homellm.planner.overrides import TensorOverride, n_cpu_moe
from homellm.planner.serving import fit_for_serving

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DraftPlan:
    """A draft model for speculative decoding, and how to load it beside its target."""

    name: str
    path: Path
    options: EngineOptions


@dataclass(frozen=True)
class LoadPlan:
    """How to load a model (and its draft model) and the memory the planner expects them to take."""

    options: EngineOptions
    memory_bytes: int = 0
    draft: DraftPlan | None = None


def checked_store(home: Path) -> Store:
    """The store at `home`, where llama.cpp must open a file (in a child process) before it is stored."""
    return Store(home, probe=probe_model_file)


def loadable_model(model: str | None, store: Store) -> ModelRef:
    """A stored model, or a GGUF path that llama.cpp has opened safely in a child process first."""
    ref = resolve_model(model, store)
    if model and model.lower().endswith(".gguf"):
        probe_model_file(ref.path)
    return ref


class Placement:
    """Plans loads on one machine with the same threads, slots, KV cache type (`kv_type` None: the
    planner's choice) and speculation per model (embedding models never speculate); warnings go to `warn`."""

    def __init__(self, store: Store, hardware: Hardware, threads: int | None = None, parallel: int = 1,
                 warn: Callable[[str], None] = log.warning, kv_type: str | None = None,
                 speculation: str = "off") -> None:
        self.store = store
        self.speculation = speculation
        self.hardware = hardware
        self.threads = threads
        self.parallel = parallel
        self.warn = warn
        self.kv_type = kv_type

    def plan(self, ref: ModelRef, ctx: int | None = None,
             overrides: tuple[TensorOverride, ...] | None = None) -> LoadPlan:
        """The context, GPU layers, experts in RAM and memory the planner gives this model here.

        `overrides` (from the command line) replace the planner's choice of experts in RAM.
        """
        facts, _ = facts_of(ref, self.store)
        fitted = fit_for_serving(shape_from_facts(ref.name, facts), self.hardware, ctx, DEFAULT_CTX, self.parallel,
                                 self.kv_type)
        for warning in fitted.warnings:
            self.warn(warning)
        # -1 offloads the output layer too, as the plan assumes; llama.cpp counts it as one more layer.
        all_offloaded = fitted.placement.gpu_layers > 0 and fitted.devices[-1].layers == 0
        gpu_layers = -1 if all_offloaded else fitted.placement.gpu_layers
        if overrides is None:
            overrides = n_cpu_moe(fitted.placement.cpu_moe_layers)
        # A draft model drafts for the model it was given with (with_draft), never for models loaded on request.
        speculation = "off" if facts.architecture in ENCODER_ARCHITECTURES or self.speculation == "draft" \
            else self.speculation
        options = EngineOptions(n_ctx=fitted.placement.ctx, n_threads=self.threads, n_gpu_layers=gpu_layers,
                                n_parallel=self.parallel, tensor_overrides=overrides, kv_type=fitted.placement.kv_type,
                                speculation=speculation)
        return LoadPlan(options, fitted.total_bytes)

    def plan_split(self, ref: ModelRef, ctx: int | None) -> LoadPlan:
        """This machine's share of a model split across RPC workers: one too large for it alone is the point."""
        try:
            return self.plan(ref, ctx)
        except DoesNotFitError:
            return LoadPlan(EngineOptions(n_ctx=ctx or DEFAULT_CTX, n_threads=self.threads,
                                          n_parallel=self.parallel, kv_type=self.kv_type or "F16",
                                          speculation=self.speculation))

    def with_draft(self, target: ModelRef, plan: LoadPlan, draft: ModelRef) -> LoadPlan:
        """The target's plan with `draft` drafting for it: the same context, slots and KV type. A draft that
        is an embedding model, larger than its target, trained on a shorter context or with another
        tokenizer (as far as the files' metadata tell: loading compares every token) is refused."""
        target_facts, _ = facts_of(target, self.store)
        facts, _ = facts_of(draft, self.store)
        ctx = plan.options.n_ctx
        refusal = draft_refusal(target_facts, facts, ctx)
        if refusal is not None:
            hint = "pick a smaller model of the same family (the same tokenizer) as --draft"
            if facts.context_length is not None and facts.context_length < ctx:
                hint += f", or serve a --ctx of at most {facts.context_length}"
            raise InvalidRequestError(f"{draft.name} cannot draft for {target.name}: {refusal}", hint=hint)
        fitted = fit_for_serving(shape_from_facts(draft.name, facts), self.hardware, ctx, DEFAULT_CTX, self.parallel,
                                 plan.options.kv_type)
        gpu_layers = -1 if fitted.placement.gpu_layers > 0 and fitted.devices[-1].layers == 0 \
            else fitted.placement.gpu_layers
        options = EngineOptions(n_ctx=ctx, n_threads=self.threads, n_gpu_layers=gpu_layers, n_parallel=self.parallel,
                                kv_type=plan.options.kv_type)
        return LoadPlan(replace(plan.options, speculation="draft"), plan.memory_bytes + fitted.total_bytes,
                        DraftPlan(draft.name, draft.path, options))

    def check_speculation(self, ref: ModelRef) -> None:
        """Refuse speculation for an embedding model given by name: it generates no tokens to draft."""
        if self.speculation == "off":
            return
        facts, _ = facts_of(ref, self.store)
        if facts.architecture in ENCODER_ARCHITECTURES:
            option = "--draft" if self.speculation == "draft" else f"--spec {self.speculation}"
            raise InvalidRequestError(
                f"{option} drafts tokens of generated text, and {ref.name} is an embedding model "
                f"({facts.architecture}), which generates none",
                hint=f"leave out {option.split()[0]}, or serve a chat model")

    def layers(self, ref: ModelRef) -> int:
        """The model's layer count, from its GGUF's metadata."""
        facts, _ = facts_of(ref, self.store)
        return shape_from_facts(ref.name, facts).layers


