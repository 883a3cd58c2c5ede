"""API prices per million tokens (`api_prices.csv`: each row with its date and source)."""

from __future__ import annotations

import csv
import difflib
import functools
from importlib import resources

from homellm.errors import InvalidRequestError
from homellm.planner.cost import ApiPrice


@functools.cache
def api_prices() -> dict[str, ApiPrice]:
    """Every API offering by its lower-case name."""
    text = resources.files("homellm.bench").joinpath("api_prices.csv").read_text(encoding="utf-8")
    return {row["name"].strip().lower(): ApiPrice(row["name"].strip(), row["provider"].strip(),
                                                   float(row["input_per_million"]), float(row["output_per_million"]),
                                                   row["as_of"].strip(), row["source"].strip())
            for row in csv.DictReader(text.splitlines())}


def find_api(name: str) -> ApiPrice:
    """An API offering by name; an unknown one is refused with the closest names."""
    prices = api_prices()
    key = name.strip().lower()
    if key in prices:
        return prices[key]
    close = difflib.get_close_matches(key, list(prices), n=3, cutoff=0.4)
    raise InvalidRequestError(f"{name!r} is not in homellm's API price table",
                              hint=f"did you mean {', '.join(close)}?" if close else
                              f"known: {', '.join(sorted(prices))}; or give --api-price-in and --api-price-out",
                              param="api")


def custom_api(input_per_million: float, output_per_million: float) -> ApiPrice:
    """Prices given on the command line."""
    return ApiPrice("custom", "custom", input_per_million, output_per_million, "given", "command line")
