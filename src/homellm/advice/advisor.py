"""What the planner says about a named model on this machine or on described hardware (CLI and HTTP share it)."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import asdict, dataclass, replace
from typing import Any

from homellm.bench.prices import api_prices, custom_api, find_api
from homellm.errors import InvalidRequestError, StoreError
from homellm.hardware.compose import compose_hardware
from homellm.hardware.types import ASSUMED_CPU_WATTS, Hardware
from homellm.models.resolve import resolve_shape
from homellm.models.store import Store
from homellm.planner.cost import ApiPrice, CostQuestion, CostReport, monthly_cost
from homellm.planner.plan import Plan, choose_quant, plan


@dataclass(frozen=True)
class PlanQuestion:
    """A plan request as a user phrases it."""

    model: str
    quant: str | None = None
    gpus: tuple[str, ...] = ()
    ram_gb: float | None = None
    memory: str | None = None
    ctx: int = 4096
    kv_type: str = "F16"
    n_cpu_moe: int | None = None  # experts of the first N layers in RAM, as given; None: the planner's choice


def advise(question: PlanQuestion, machine: Hardware | None, store: Store | None,
           allow_paths: bool = True) -> tuple[Plan, Hardware]:
    """The plan for the question; a catalog model without a quant gets the best quant that fits."""
    shape = resolve_shape(question.model, store, allow_paths)
    hardware = compose_hardware(machine, list(question.gpus), question.ram_gb, question.memory)
    measured = _measured_kl(store, shape.name)
    if question.n_cpu_moe is not None:
        return plan(shape, hardware, question.ctx, question.kv_type, question.quant,
                    cpu_moe_layers=question.n_cpu_moe, measured_kl=measured), hardware
    if question.quant is None and shape.quant is None:
        return choose_quant(shape, hardware, question.ctx, question.kv_type, measured_kl=measured), hardware
    return plan(shape, hardware, question.ctx, question.kv_type, question.quant, measured_kl=measured), hardware


def _measured_kl(store: Store | None, model: str) -> dict[str, float]:
    """The KL by quant that `homellm quant sweep` measured for this model, kept beside the store."""
    from homellm.quant.results import QuantResults

    if store is None or not (store.home / QuantResults.FILE).is_file():
        return {}
    try:
        return QuantResults(store.home).measured_kl(model)
    except (StoreError, sqlite3.Error):  # an optional measurement must not stop a plan
        return {}


@dataclass(frozen=True)
class CostAsk:
    """`homellm cost` as a user phrases it."""

    watts: float | None = None
    model: str | None = None
    gpus: tuple[str, ...] = ()
    ram_gb: float | None = None
    price_per_kwh: float = 0.16
    hours_per_day: float = 24.0
    tokens_per_day: float | None = None
    input_share: float = 0.5
    hardware_price: float | None = None
    years: float | None = None
    api: str | None = None
    api_price_in: float | None = None
    api_price_out: float | None = None


@dataclass(frozen=True)
class CostAnswer:
    """The local cost, where its power and speed come from, and every API's bill for the same tokens."""

    report: CostReport
    watts: float
    watts_source: str
    tokens_per_second: float | None
    apis: tuple[tuple[ApiPrice, CostReport], ...]


def cost(ask: CostAsk, machine: Hardware | None, store: Store | None, allow_paths: bool = True) -> CostAnswer:
    """Electricity and amortisation of running locally, against API prices for the same tokens."""
    watts, watts_source, tps = ask.watts, "given", None
    if ask.model:
        planned, hardware = advise(PlanQuestion(ask.model, gpus=ask.gpus, ram_gb=ask.ram_gb), machine, store,
                                   allow_paths)
        tps = planned.decode_tps or None
        if watts is None:
            watts, watts_source = _planned_watts(planned, hardware)
    if watts is None:
        raise InvalidRequestError("give the power draw with --watts, or a model with --model",
                                  hint="homellm cost --watts 450 --price 0.16", param="watts")
    question = CostQuestion(watts, ask.price_per_kwh, ask.hours_per_day, ask.tokens_per_day, ask.input_share,
                            ask.hardware_price, ask.years, tps)
    chosen = _chosen_api(ask)
    report = monthly_cost(replace(question, api=chosen))
    apis = tuple((price, monthly_cost(replace(question, api=price)))
                 for price in ([chosen] if chosen else api_prices().values()))
    if chosen is None and ask.tokens_per_day:
        cheapest = min(apis, key=lambda pair: pair[1].api_cost_per_month or 0.0)
        report = cheapest[1]
    return CostAnswer(report, watts, watts_source, tps, apis)


def _planned_watts(planned: Plan, hardware: Hardware) -> tuple[float, str]:
    """Board power of the devices that work on each token: an upper bound, since decode rarely draws it all."""
    host_works = planned.devices[-1].layers > 0 or planned.placement.cpu_moe_layers > 0
    working = [d for d in hardware.accelerators if any(load.device == d.name and load.layers for load in planned.devices)]
    if host_works or not working:
        working.append(hardware.host)
    assumed = [d.name for d in working if d.tdp_w is None]
    total = sum(d.tdp_w if d.tdp_w is not None else ASSUMED_CPU_WATTS for d in working)
    source = "estimate: board power of " + ", ".join(dict.fromkeys(d.name for d in working))
    if assumed:
        source += f" ({ASSUMED_CPU_WATTS:.0f} W assumed for {', '.join(assumed)})"
    return total, source


def _chosen_api(ask: CostAsk) -> ApiPrice | None:
    if (ask.api_price_in is None) != (ask.api_price_out is None):
        raise InvalidRequestError("--api-price-in and --api-price-out go together", hint="give both, in $ per million",
                                  param="api_price_in")
    if ask.api_price_in is not None and ask.api_price_out is not None:
        for value, param in ((ask.api_price_in, "api_price_in"), (ask.api_price_out, "api_price_out")):
            if not (math.isfinite(value) and value >= 0):
                raise InvalidRequestError(f"{value:g} is not a price", hint="give $ per million tokens", param=param)
        return custom_api(ask.api_price_in, ask.api_price_out)
    return find_api(ask.api) if ask.api else None


def cost_dict(answer: CostAnswer) -> dict[str, Any]:
    """The JSON form of `homellm cost` and GET /homellm/cost."""
    report = answer.report
    return {
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(report).items()},
        "watts": answer.watts, "watts_source": answer.watts_source, "tokens_per_second": answer.tokens_per_second,
        "apis": [{"name": price.name, "provider": price.provider, "input_per_million": price.input_per_million,
                  "output_per_million": price.output_per_million, "as_of": price.as_of, "source": price.source,
                  "cost_per_month": r.api_cost_per_month, "breakeven_tokens_per_day": r.breakeven_tokens_per_day}
                 for price, r in answer.apis],
    }
