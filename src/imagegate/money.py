"""Money is integer millicredits (1 credit = 1000) everywhere but the API's JSON."""

from __future__ import annotations


def as_credits(millicredits: int) -> int | float:
    """Millicredits as a JSON credit amount: an integer when whole, else 3 decimals at most."""
    whole, rest = divmod(millicredits, 1000)
    return whole if rest == 0 else round(millicredits / 1000, 3)
