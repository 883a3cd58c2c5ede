"""The API price table: at least six offerings, small and large, each dated and sourced."""

from __future__ import annotations

import re

import pytest

from homellm.bench.prices import api_prices, find_api
from homellm.errors import InvalidRequestError


def test_six_or_more_dated_and_sourced_offerings():
    prices = api_prices()
    assert len(prices) >= 6 and len({p.provider for p in prices.values()}) >= 3
    for price in prices.values():
        assert re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", price.as_of) and price.source.startswith("https://")
        assert 0 < price.input_per_million <= price.output_per_million
    outputs = sorted(p.output_per_million for p in prices.values())
    assert outputs[-1] >= 10 * outputs[0], "small and large models both"


def test_unknown_api_is_refused_with_close_names():
    name = next(iter(api_prices()))
    with pytest.raises(InvalidRequestError) as info:
        find_api(name + "x")
    assert name in info.value.hint
