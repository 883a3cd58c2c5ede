"""Electricity, amortisation and API prices: REFERENCE.md's 450 W example and the refusals."""

from __future__ import annotations

import math

import pytest

from homellm.errors import InvalidRequestError
from homellm.planner.cost import ApiPrice, CostQuestion, monthly_cost

API = ApiPrice("test-api", "test", 0.5, 1.5, "2026-11-01", "https://example.org/prices")


def test_450_w_all_month_at_16_cents_is_51_84():
    report = monthly_cost(CostQuestion(watts=450, price_per_kwh=0.16, hours_per_day=24))
    assert report.kwh_per_month == pytest.approx(324.0)
    assert round(report.electricity_per_month, 2) == 51.84 and report.total_per_month == report.electricity_per_month


def test_hours_per_day_scale_the_bill():
    half = monthly_cost(CostQuestion(watts=450, price_per_kwh=0.16, hours_per_day=12))
    assert round(half.electricity_per_month, 2) == 25.92


def test_energy_per_token_from_power_and_speed_is_an_estimate():
    report = monthly_cost(CostQuestion(watts=300, price_per_kwh=0.2, tokens_per_second=100))
    assert report.joules_per_token == pytest.approx(3.0) and report.energy_source.startswith("estimate")
    # 3 J/token x 1e6 tokens = 3e6 J = 0.8333 kWh, x $0.20
    assert report.cost_per_million_tokens == pytest.approx(3e6 / 3.6e6 * 0.2)


def test_measured_joules_win_and_are_named():
    report = monthly_cost(CostQuestion(watts=300, price_per_kwh=0.2, tokens_per_second=100, joules_per_token=1.2))
    assert report.joules_per_token == 1.2 and report.energy_source == "measured"


def test_amortisation_spreads_the_price_over_the_months():
    report = monthly_cost(CostQuestion(watts=450, price_per_kwh=0.16, hardware_price=1800, years=3))
    assert report.amortisation_per_month == pytest.approx(50.0)
    assert report.total_per_month == pytest.approx(51.84 + 50.0)


def test_api_bill_and_break_even():
    report = monthly_cost(CostQuestion(watts=450, price_per_kwh=0.16, tokens_per_day=1_000_000, api=API))
    # half input at $0.50, half output at $1.50: $1.00 per million, 30 million tokens a month
    assert report.api_cost_per_month == pytest.approx(30.0)
    assert report.breakeven_tokens_per_day == pytest.approx(51.84 / 30 / 1e-6)


def test_hours_needed_for_the_days_tokens():
    report = monthly_cost(CostQuestion(watts=450, price_per_kwh=0.16, tokens_per_day=360_000, tokens_per_second=50))
    assert report.hours_needed_per_day == pytest.approx(2.0)


@pytest.mark.parametrize("field, value", [("watts", -1), ("watts", 0), ("watts", math.nan), ("price_per_kwh", 0),
                                          ("price_per_kwh", -0.1), ("price_per_kwh", math.nan),
                                          ("hours_per_day", 25), ("hours_per_day", 0), ("tokens_per_day", -5),
                                          ("input_share", 1.5)])
def test_bad_numbers_are_refused(field: str, value: float):
    kwargs = {"watts": 450, "price_per_kwh": 0.16, field: value}
    with pytest.raises(InvalidRequestError):
        monthly_cost(CostQuestion(**kwargs))


def test_hardware_price_needs_years():
    with pytest.raises(InvalidRequestError, match="go together"):
        monthly_cost(CostQuestion(watts=450, price_per_kwh=0.16, hardware_price=1000))
