"""Time-ordered, prefixed identifiers (``job_01J…``) so ids sort by creation."""

from __future__ import annotations

import secrets
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_RANDOM_BITS = 80
_lock = threading.Lock()
_last = 0


def new_id(prefix: str) -> str:
    """48 bits of milliseconds then 80 random bits, 26 base32 characters.

    Within a process the ids also sort by creation inside one millisecond: an id made in
    the same millisecond as the one before (or while the clock stepped back) is the one
    before plus a random step, as monotonic ULIDs do.
    """
    global _last
    now = int(time.time() * 1000) << _RANDOM_BITS
    with _lock:
        value = now | secrets.randbits(_RANDOM_BITS)
        if value <= _last:
            value = _last + 1 + secrets.randbits(32)
        _last = value
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"
