"""How many credits an operation costs, from its cost configuration (pure functions)."""

from __future__ import annotations

import calendar
import math
from datetime import datetime
from typing import Any

UNITS = ("per_request", "per_100_words", "per_200_words", "per_item", "per_image", "per_tokens")
WORD_UNITS = {"per_100_words": 100, "per_200_words": 200}


class PricingError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def price(config: Any, *, units: int | None = None, tokens: int | None = None) -> int:
    """Credits for `units` of work (items, images, requests, words) or `tokens`."""
    unit = config.unit
    minimum = int(config.min_credits or 0)
    if unit == "per_tokens":
        count = tokens if tokens is not None else units
        if count is None:
            raise PricingError("units", "Token-priced operations need an estimate in tokens.")
        per_credit = int(config.tokens_per_credit or 0)
        if per_credit <= 0:
            raise PricingError("operation_type", "The operation has no tokens-per-credit rate.")
        return max(minimum, math.ceil(count / per_credit))
    if unit in WORD_UNITS:
        if units is None:
            raise PricingError("units", "Word-priced operations need the number of words.")
        return max(minimum, math.ceil(units / WORD_UNITS[unit]) * int(config.credits_cost))
    return max(minimum, (1 if units is None else units) * int(config.credits_cost))


def add_month(moment: datetime) -> datetime:
    """The same day and time next month (clamped to the month's last day)."""
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)
