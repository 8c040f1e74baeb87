"""OpenTelemetry traces, with the ``imagegate[otel]`` extra and ``IMAGEGATE_OTEL_ENABLED``.

A span per HTTP request (FastAPI's instrumentation, which also carries a caller's
``traceparent``) and one per job attempt, exported over OTLP as the standard
``OTEL_EXPORTER_OTLP_*`` and ``OTEL_SERVICE_NAME`` variables say. Without the extra or
the setting, nothing here does anything.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from imagegate.config import Settings

log = logging.getLogger("imagegate.tracing")

_tracer: Any = None


def instrument(app: Any, settings: Settings) -> None:
    """Trace ``app``'s requests when tracing is on."""
    global _tracer
    if not settings.otel_enabled:
        return
    try:
        from opentelemetry import trace
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        log.warning("IMAGEGATE_OTEL_ENABLED is set but imagegate[otel] is not installed")
        return
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider(resource=Resource.create({"service.name": "imagegate"}))
        with contextlib.suppress(ImportError):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("imagegate")
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")


@contextlib.contextmanager
def span(name: str, **attributes: str | int) -> Iterator[None]:
    """A span around a piece of work (a job attempt) when tracing is on."""
    if _tracer is None:
        yield
        return
    with _tracer.start_as_current_span(name, attributes=attributes):
        yield
