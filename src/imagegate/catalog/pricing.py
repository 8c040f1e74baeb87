"""What a request costs, in integer millicredits, from the model's price rule."""

from __future__ import annotations

from typing import Any

from imagegate.catalog.spec import ModelSpec

MEGAPIXEL = 1_000_000


def _megapixels(width: int, height: int, rounding: str) -> int:
    pixels = width * height
    if rounding == "nearest":
        return max(1, (pixels + MEGAPIXEL // 2) // MEGAPIXEL)
    return max(1, -(-pixels // MEGAPIXEL))


def estimate(model: ModelSpec, params: dict[str, Any], n: int, width: int, height: int) -> int:
    """The cost of ``n`` images of ``width`` x ``height`` with these native parameters."""
    price = model.price
    if price.rule == "free":
        return 0
    if price.rule == "per_megapixel":
        unit = price.credits * _megapixels(width, height, price.rounding)
    elif price.rule == "per_quality":
        quality = str(params.get("quality", ""))
        unit = price.by_quality.get(quality, price.credits)
    else:
        unit = price.credits
    for field, factors in price.multipliers.items():
        factor = factors.get(str(params.get(field)))
        if factor is not None:
            unit = round(unit * factor)
    for field, extra in price.extras.items():
        if params.get(field) is True:
            unit += extra
    return unit * n
