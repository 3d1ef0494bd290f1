"""What an AI call cost in USD, from the tokens the provider reported."""

from __future__ import annotations

from decimal import Decimal

from libs.common.ai.base import Usage

# USD per million (input, output) tokens of well-known chat models, matched by the
# longest prefix of the model name the provider answered with. Other models (self-hosted
# endpoints, the offline engines) are recorded at 0: their tokens are still logged and
# captured.
PRICES_PER_MILLION: dict[str, tuple[Decimal, Decimal]] = {
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")),
    "gpt-4o": (Decimal("2.50"), Decimal("10.00")),
    "gpt-4.1-nano": (Decimal("0.10"), Decimal("0.40")),
    "gpt-4.1-mini": (Decimal("0.40"), Decimal("1.60")),
    "gpt-4.1": (Decimal("2.00"), Decimal("8.00")),
    "gpt-3.5-turbo": (Decimal("0.50"), Decimal("1.50")),
}
_BY_LENGTH = sorted(PRICES_PER_MILLION, key=len, reverse=True)


def cost_usd(model: str, usage: Usage) -> Decimal:
    name = model.lower()
    for prefix in _BY_LENGTH:
        if name.startswith(prefix):
            price_in, price_out = PRICES_PER_MILLION[prefix]
            cost = (price_in * usage.prompt_tokens + price_out * usage.completion_tokens) / (
                Decimal(1_000_000))
            return cost.quantize(Decimal("0.000001"))
    return Decimal("0")
