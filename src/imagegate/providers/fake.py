"""A provider whose behaviour is a function you pass in, for testing code that uses imagegate."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from imagegate.providers.base import ProviderRequest, ProviderResult

Handler = Callable[[ProviderRequest], ProviderResult | Awaitable[ProviderResult]]


class FakeProvider:
    """``FakeProvider(handler)``: every request goes to ``handler``; it may raise our errors."""

    def __init__(self, handler: Handler, name: str = "fake") -> None:
        self.name = name
        self._handler = handler
        self.requests: list[ProviderRequest] = []

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        self.requests.append(request)
        result = self._handler(request)
        if inspect.isawaitable(result):
            return await result
        return result
