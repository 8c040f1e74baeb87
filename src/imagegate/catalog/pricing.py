"""What a request costs, in integer millicredits, from the model's price rule.

No floats: amounts are millicredits or micro-dollars, and every division rounds
half-up explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imagegate.catalog.spec import MICRO, MILLI, ModelSpec, PriceSpec

# 1024 x 1024 pixels: the seeds bill 1024x1024 as 1 MP (not 2 when rounded up) and
# 1920x1080 as 2 MP, 2048x2048 as 4 MP.
MEGAPIXEL = 1024 * 1024
REFERENCE_SIZE = (1024, 1024)  # the size prices are shown at (the admin guide's)


def _div_half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


def megapixels(width: int, height: int, rounding: str) -> int:
    """Whole megapixels of output, at least one: rounded up, or to the nearest."""
    pixels = width * height
    if rounding == "nearest":
        return max(1, _div_half_up(pixels, MEGAPIXEL))
    return max(1, -(-pixels // MEGAPIXEL))


def unit_price(price: PriceSpec, params: dict[str, Any], width: int, height: int) -> int:
    """One image's price in the rule's own minor unit (millicredits or micro-dollars)."""
    if price.rule == "free":
        return 0
    if price.rule == "per_megapixel":
        count = megapixels(width, height, price.rounding)
        first = price.first if price.first is not None else price.amount
        unit = first + price.amount * (count - 1)
    elif price.rule == "per_quality":
        unit = price.by_quality.get(str(params.get(price.quality_field)), price.amount)
    else:
        unit = price.amount
    for field, factors in price.multipliers.items():
        unit *= factors.get(str(params.get(field)), 1)
    for field, extra in price.extras.items():
        if params.get(field) is True:
            unit += extra
    unit = _div_half_up(unit * price.markup_percent, 100)
    return _div_half_up(unit, price.round_to) * price.round_to


def to_credits(price: PriceSpec, amount: int) -> int:
    """An amount in the rule's minor unit as millicredits."""
    if price.currency == "credits":
        return amount
    return _div_half_up(amount * price.credits_per_usd * MILLI, MICRO)


def estimate(model: ModelSpec, params: dict[str, Any], n: int, width: int, height: int) -> int:
    """The cost of ``n`` images of ``width`` x ``height`` with these native parameters."""
    return to_credits(model.price, unit_price(model.price, params, width, height)) * n


def actual_cost(model: ModelSpec, params: dict[str, Any], outputs: list[tuple[int, int]]) -> int:
    """What the images really returned cost: each priced at its own dimensions.

    Per-megapixel models (FLUX.2 Pro) are captured at the true output size (as the jobs
    API price list says).
    """
    price = model.price
    return sum(to_credits(price, unit_price(price, params, w, h)) for w, h in outputs)


@dataclass(frozen=True, slots=True)
class Rates:
    """How credits are shown in euros: ``micro_eur_per_credit`` and the workspace margin."""

    micro_eur_per_credit: int
    margin_percent: int

    def micro_eur(self, millicredits: int) -> int:
        """Millicredits as micro-euros including the margin, rounded half-up."""
        return _div_half_up(
            millicredits * self.micro_eur_per_credit * (100 + self.margin_percent), MILLI * 100
        )


def reference_params(model: ModelSpec) -> dict[str, Any]:
    """The model's defaults, with its size field set to 1024x1024 where it can be."""
    params = {name: spec.default for name, spec in model.params.items() if spec.has_default}
    sizes = model.sizes
    if sizes.field is not None:
        for native, dims in sizes.options.items():
            if dims == REFERENCE_SIZE:
                params[sizes.field] = native
                break
        else:
            if sizes.custom is not None:
                params[sizes.field] = {"width": 1024, "height": 1024}
    return params


def describe_rule(price: PriceSpec) -> str:
    """The rule in words, for price tables."""
    unit = "USD" if price.currency == "usd" else "credits"
    scale = MICRO if price.currency == "usd" else MILLI

    def amount(value: int) -> str:
        return f"{value / scale:g} {unit}"

    if price.rule == "free":
        return "free"
    if price.rule == "per_megapixel":
        rounding = "rounded up" if price.rounding == "up" else "rounded to the nearest"
        base = f"{amount(price.amount)} per megapixel ({rounding})"
        if price.first is not None and price.first != price.amount:
            base = (
                f"{amount(price.first)} for the first megapixel, "
                f"{amount(price.amount)} per extra megapixel ({rounding})"
            )
    elif price.rule == "per_quality":
        qualities = ", ".join(f"{q}: {amount(v)}" for q, v in price.by_quality.items())
        base = f"per image by {price.quality_field} ({qualities})"
    else:
        base = f"{amount(price.amount)} per image"
    parts = [base]
    for field, factors in price.multipliers.items():
        parts.extend(f"x{f} when {field} is {v}" for v, f in factors.items())
    parts.extend(f"+{amount(extra)} with {field}" for field, extra in price.extras.items())
    if price.markup_percent != 100:
        parts.append(f"x{price.markup_percent / 100:g} markup")
    return "; ".join(parts)
