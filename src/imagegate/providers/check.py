"""``imagegate providers check``: per provider, are credentials set and does the endpoint answer?

Each adapter's ``check`` makes one authenticated call that generates nothing and costs
nothing (list models, read the account or its credits).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from imagegate.config import Settings
from imagegate.errors import ImagegateError
from imagegate.providers.setup import ProviderSetup, configure


@dataclass(frozen=True, slots=True)
class CheckResult:
    provider: str
    configured: bool
    source: str | None
    ok: bool
    detail: str
    latency_ms: float | None = None


async def _check(setup: ProviderSetup, within: float) -> CheckResult:
    if setup.adapter is None:
        return CheckResult(setup.name, False, None, False, setup.missing or "not configured")
    check = getattr(setup.adapter, "check", None)
    if check is None:
        return CheckResult(setup.name, True, setup.source, True, "configured (no free check call)")
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(within), timeout=within)
    except ImagegateError as exc:
        return CheckResult(setup.name, True, setup.source, False, f"{exc.code}: {exc.message}")
    except TimeoutError:
        return CheckResult(setup.name, True, setup.source, False, f"no answer within {within:g}s")
    except Exception as exc:  # a broken endpoint must not hide the other providers' results
        return CheckResult(setup.name, True, setup.source, False, f"{type(exc).__name__}: {exc}")
    finally:
        close = getattr(setup.adapter, "aclose", None)
        if close is not None:
            await close()
    latency = (time.perf_counter() - started) * 1000
    return CheckResult(setup.name, True, setup.source, True, "endpoint answers", latency)


async def check_providers(settings: Settings, within: float = 10.0) -> list[CheckResult]:
    """Every built-in provider, checked at once."""
    setups = configure(settings)
    return list(await asyncio.gather(*(_check(setup, within) for setup in setups)))
