"""Options that several commands share, and where weights go as llama-server's options say it:
--cpu-moe, --n-cpu-moe, --override-tensor."""

from __future__ import annotations

from typing import Annotated

import typer

from homellm.config import DEFAULT_CTX
from homellm.errors import InvalidRequestError
from homellm.generation import check_reasoning_budget
from homellm.models.builtin import BUILTIN_NAME
from homellm.planner.overrides import (
    TensorOverride,
    cpu_moe,
    n_cpu_moe,
    parse_overrides,
)
from homellm.planner.quants import kv_label, kv_type_name
from homellm.scheduler.repetition import MAX_REPEATS

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ModelOption = Annotated[str | None, typer.Option("--model", "-m", help=f"Stored model name or .gguf path [default: {BUILTIN_NAME}].")]
CtxOption = Annotated[int | None, typer.Option(
    "--ctx", min=16, help=f"Context length in tokens [default: {DEFAULT_CTX}, less when the model was trained "
                          "on less or memory is short]; refused when the planner says it does not fit.")]
ThreadsOption = Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads [default: every core].")]
DocsOption = Annotated[str | None, typer.Option("--docs", help="Answer from this document collection (homellm docs add).")]
TemperatureOption = Annotated[float | None, typer.Option(
    min=0.0, max=2.0, help="Sampling temperature; 0 always picks the most likely token "
                           "[default: the model's, see `homellm show`].")]
AnswerCapOption = Annotated[int, typer.Option(
    "--max-tokens", min=0, help="Stop an answer after this many tokens; 0: no cap.")]
LoopGuardOption = Annotated[int, typer.Option(
    "--loop-guard", min=0, max=MAX_REPEATS,
    help="Stop an answer that repeats one span of tokens this many times in a row; 0: never.")]
RepeatPenaltyOption = Annotated[float | None, typer.Option(
    "--repeat-penalty", min=0.0, help="Penalty on tokens the answer said recently; 1 turns it off "
                                      "[default: the model's, see `homellm show`].")]
ReasoningBudgetOption = Annotated[int | None, typer.Option(
    "--reasoning-budget", help="A reasoning model thinks at most this many tokens: then its thinking is closed "
                               "and it answers (1 to 2147483647; on serve, a request's own budget wins) "
                               "[default: no limit].")]
ThinkOption = Annotated[bool | None, typer.Option(
    "--think/--no-think", help="Turn a reasoning model's thinking on or off, where its chat template has the "
                               "switch [default: the template's].")]
DEFAULT_ANSWER_TOKENS = 1024
DEFAULT_LOOP_GUARD = 8
DEFAULT_PARALLEL = 4
RpcOption = Annotated[str | None, typer.Option(
    "--rpc", help="Split the model across llama.cpp RPC workers, HOST:PORT[,HOST:PORT...], each running "
                  "`homellm worker`. RPC has no authentication: trusted networks only.")]
RpcLayersOption = Annotated[int | None, typer.Option(
    "--rpc-layers", min=0, help="Layers to put on the RPC workers [default: their share of the free memory].")]
RpcTimeoutOption = Annotated[float, typer.Option(
    "--rpc-timeout", min=1.0, help="Seconds one decode step of a split model may take before its workers count as "
                                   "lost (one vanished without closing its connection).")]
RpcDirectOption = Annotated[str | None, typer.Option("--rpc-direct", hidden=True,
                                                     help="Load the model across these workers in this process.")]
KvTypeOption = Annotated[str | None, typer.Option(
    "--kv-type", help="KV cache type for keys and values: f16, q8_0 (half the memory, close to lossless), q4_0 "
                      "(a quarter, answers degrade), or another llama.cpp -ctk type [default: f16, or q8_0 / q4_0 "
                      "when only that makes a --ctx given fit].")]
KvTypeKOption = Annotated[str | None, typer.Option("--kv-type-k", help="KV cache type for keys only [default: --kv-type].")]
KvTypeVOption = Annotated[str | None, typer.Option(
    "--kv-type-v", help="KV cache type for values only [default: --kv-type]; a quantized one needs flash attention.")]
CpuMoeOption = Annotated[bool, typer.Option(
    "--cpu-moe", help="Keep every expert tensor of a mixture-of-experts model in system RAM.")]
NCpuMoeOption = Annotated[int | None, typer.Option(
    "--n-cpu-moe", min=0, help="Keep the experts of the first N layers in system RAM [default: the planner's choice].")]
OverrideTensorOption = Annotated[list[str] | None, typer.Option(
    "--override-tensor", "-ot", help=r"PATTERN=DEVICE[,PATTERN=DEVICE...]: tensors whose names match go to that "
                                     r"device's memory (repeatable; e.g. 'blk\.[0-9]\.ffn_.*_exps=CPU'). On serve it "
                                     r"applies to --model; models loaded on request get the planner's placement.")]


def tensor_overrides(all_experts: bool, first_layers: int | None,
                     patterns: list[str] | None) -> tuple[TensorOverride, ...] | None:
    """The overrides asked for on the command line, or None to let the planner place experts.

    Explicit patterns come first, so they win over --cpu-moe and --n-cpu-moe, as in llama-server.
    """
    if all_experts and first_layers is not None:
        raise InvalidRequestError("--cpu-moe and --n-cpu-moe say the same thing twice",
                                  hint="give one: --cpu-moe for every layer, --n-cpu-moe N for the first N")
    if not all_experts and first_layers is None and not patterns:
        return None
    explicit = tuple(o for text in patterns or () for o in parse_overrides(text))
    experts = cpu_moe() if all_experts else n_cpu_moe(first_layers or 0)
    return explicit + experts


SPECULATION_MODES = ("off", "ngram")
SpecOption = Annotated[str, typer.Option(
    "--spec", help="Speculative decoding: 'ngram' drafts tokens from the prompt and the answer so far (no second "
                   "model) and verifies them in the same step; each slot drafts only while its measured acceptance "
                   "pays for the verification. Wins where answers copy text: quotes, edits, repeated JSON keys.")]


DraftOption = Annotated[str | None, typer.Option(
    "--draft", help="A smaller model of the same family (stored name or .gguf path) that drafts tokens for the "
                    "model to verify: speculative decoding with a draft model. Each slot drafts as many tokens as its "
                    "measured acceptance and both models' measured step costs make worth it (none when that is "
                    "slower), and stops where the draft model is unsure.")]


def speculation_mode(value: str, draft: str | None = None) -> str:
    """A checked --spec value; "draft" with a --draft model."""
    mode = value.strip().lower()
    if mode not in SPECULATION_MODES:
        raise InvalidRequestError(f"--spec {value!r} is not a speculation mode",
                                  hint=f"use one of: {', '.join(SPECULATION_MODES)}, or --draft MODEL")
    if draft is None:
        return mode
    if mode != "off":
        raise InvalidRequestError(f"--spec {mode} and --draft are two ways of drafting tokens",
                                  hint="give one of them")
    return "draft"


def kv_cache_type(kv_type: str | None, kv_type_k: str | None, kv_type_v: str | None) -> str | None:
    """The KV type `--kv-type`, `--kv-type-k` and `--kv-type-v` name ("Q8_0", or "Q8_0/F16" when K and V
    differ); None when none is given, for the planner to choose."""
    if kv_type is None and kv_type_k is None and kv_type_v is None:
        return None
    both = kv_type_name(kv_type) if kv_type is not None else "F16"
    k = kv_type_name(kv_type_k, "kv_type_k") if kv_type_k is not None else both
    v = kv_type_name(kv_type_v, "kv_type_v") if kv_type_v is not None else both
    return kv_label(k, v)


def reasoning_budget(value: int | None) -> int | None:
    """`--reasoning-budget` checked: a one-line error naming the option, before any model loads."""
    try:
        return check_reasoning_budget(value)
    except ValueError as exc:
        raise InvalidRequestError(f"--reasoning-budget: {exc}",
                                  hint="give 1 or more thinking tokens, or leave it out for no limit (--no-think on chat and run "
                                       "turns thinking off)",
                                  param="--reasoning-budget") from None
