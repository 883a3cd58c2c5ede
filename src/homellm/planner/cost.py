"""Money: electricity for a machine's power draw, hardware amortisation, and the same tokens bought from an API.

A 450 W card at full load for a 30-day month at $0.16/kWh costs 450 W x 720 h x
$0.16/kWh = $51.84 (../shared/REFERENCE.md). Energy per token is joules per
second over tokens per second; where nothing measured it, it is the board power
over the planner's decode rate, and the report says it is an estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from homellm.errors import InvalidRequestError

DAYS_PER_MONTH = 30
JOULES_PER_KWH = 3.6e6


@dataclass(frozen=True)
class ApiPrice:
    """What an API charges per million tokens, and since when."""

    name: str
    provider: str
    input_per_million: float
    output_per_million: float
    as_of: str
    source: str


@dataclass(frozen=True)
class CostQuestion:
    """What running locally draws and costs, against what an API charges."""

    watts: float
    price_per_kwh: float
    hours_per_day: float = 24.0
    tokens_per_day: float | None = None  # tokens a day, input and output together
    input_share: float = 0.5  # of tokens_per_day, the share that is prompt (input) tokens
    hardware_price: float | None = None
    years: float | None = None
    tokens_per_second: float | None = None  # decode rate, measured or planned
    joules_per_token: float | None = None  # measured; else estimated from watts and tokens_per_second
    api: ApiPrice | None = None


@dataclass(frozen=True)
class CostReport:
    """Monthly figures in the currency of the prices given."""

    kwh_per_month: float
    electricity_per_month: float
    joules_per_token: float | None
    energy_source: str  # "measured", "estimate: board power / planned decode rate", ...
    cost_per_million_tokens: float | None  # electricity only
    amortisation_per_month: float
    total_per_month: float
    api_name: str | None
    api_cost_per_month: float | None
    breakeven_tokens_per_day: float | None  # where an API bill would equal the local monthly cost
    hours_needed_per_day: float | None  # to generate tokens_per_day at tokens_per_second


def monthly_cost(q: CostQuestion) -> CostReport:
    """Electricity, amortisation and the API alternative for one month of use."""
    _check(q)
    kwh = q.watts * q.hours_per_day * DAYS_PER_MONTH / 1000
    electricity = kwh * q.price_per_kwh
    joules, source = _energy_per_token(q)
    per_million = joules * 1e6 / JOULES_PER_KWH * q.price_per_kwh if joules is not None else None
    amortisation = q.hardware_price / (q.years * 12) if q.hardware_price and q.years else 0.0
    total = electricity + amortisation
    blended = _api_price_per_token(q)
    api_cost = q.tokens_per_day * DAYS_PER_MONTH * blended if blended is not None and q.tokens_per_day else None
    breakeven = total / (DAYS_PER_MONTH * blended) if blended else None
    hours = (q.tokens_per_day / q.tokens_per_second / 3600
             if q.tokens_per_day and q.tokens_per_second else None)
    return CostReport(
        kwh_per_month=kwh, electricity_per_month=electricity, joules_per_token=joules, energy_source=source,
        cost_per_million_tokens=per_million, amortisation_per_month=amortisation, total_per_month=total,
        api_name=q.api.name if q.api else None, api_cost_per_month=api_cost, breakeven_tokens_per_day=breakeven,
        hours_needed_per_day=hours)


def _energy_per_token(q: CostQuestion) -> tuple[float | None, str]:
    if q.joules_per_token is not None:
        return q.joules_per_token, "measured"
    if q.tokens_per_second:
        return q.watts / q.tokens_per_second, "estimate: power draw / decode rate"
    if q.tokens_per_day:
        return q.watts * q.hours_per_day * 3600 / q.tokens_per_day, "estimate: power draw over the day's tokens"
    return None, "unknown: give --model or --tokens-per-day"


def _api_price_per_token(q: CostQuestion) -> float | None:
    if q.api is None:
        return None
    per_million = q.input_share * q.api.input_per_million + (1 - q.input_share) * q.api.output_per_million
    return per_million / 1e6


def _check(q: CostQuestion) -> None:
    _positive(q.watts, "watts", "a power draw in watts, such as 450")
    _positive(q.price_per_kwh, "price", "a price per kWh, such as 0.16")
    if not (math.isfinite(q.hours_per_day) and 0 < q.hours_per_day <= 24):
        raise InvalidRequestError(f"{q.hours_per_day:g} hours a day is not possible", hint="give 0 to 24 hours",
                                  param="hours_per_day")
    if q.tokens_per_day is not None:
        _positive(q.tokens_per_day, "tokens_per_day", "a number of tokens a day")
    if not 0 <= q.input_share <= 1:
        raise InvalidRequestError(f"an input share of {q.input_share:g} is not a share", hint="give 0 to 1",
                                  param="input_share")
    if (q.hardware_price is None) != (q.years is None):
        raise InvalidRequestError("--hardware-price and --years go together",
                                  hint="give both to spread the price over the years", param="years")
    if q.hardware_price is not None and q.years is not None:
        _positive(q.hardware_price, "hardware_price", "a price such as 1600", allow_zero=True)
        _positive(q.years, "years", "a number of years such as 3")


def _positive(value: float, param: str, hint: str, allow_zero: bool = False) -> None:
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise InvalidRequestError(f"{param.replace('_', ' ')} {value:g} is not usable", hint=f"give {hint}",
                                  param=param)
