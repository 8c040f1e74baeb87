"""A graceful shutdown on SIGTERM (and Ctrl-C) for a process that uvicorn serves.

uvicorn's own handler stops the server: it stops listening, waits for the requests in
flight and then runs the app's shutdown. In front of it, this handler first tells the
gateway to drain (``/readyz`` turns 503, no new attempts start, running ones get their
grace period, then are handed back), and hands the signal on to uvicorn after
``shutdown_delay_seconds``, so that a load balancer that watches ``/readyz`` stops
sending requests before the port closes. A second signal goes to uvicorn at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import signal
import threading
from types import FrameType

from imagegate.gateway import Gateway

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def drain_on_signals(gateway: Gateway) -> None:
    """Put the drain in front of the handlers uvicorn installed (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    delay = gateway.settings.shutdown_delay_seconds
    previous: dict[int, object] = {signum: signal.getsignal(signum) for signum in SIGNALS}

    def handler(signum: int, frame: FrameType | None) -> None:
        first = not gateway.draining
        # In a context of its own: the signal interrupts whatever task was running.
        loop.call_soon_threadsafe(gateway.begin_drain, context=contextvars.Context())
        then = previous[signum]
        if not callable(then):
            return
        if first and delay > 0:
            loop.call_soon_threadsafe(
                loop.call_later, delay, then, signum, frame, context=contextvars.Context()
            )
        else:
            then(signum, frame)

    for signum, then in previous.items():
        if callable(then):
            signal.signal(signum, handler)
