"""OpenTelemetry traces with the otel extra: a span per request and per job attempt."""

from __future__ import annotations

import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from imagegate.app import create_app
from imagegate.config import Settings
from imagegate.gateway import Gateway


async def test_requests_and_job_attempts_become_spans(settings: Settings) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # the gateway keeps a provider that is set
    own = settings.model_copy(update={"otel_enabled": True})
    gateway = Gateway(own)
    app = create_app(own, gateway=gateway)
    async with app.router.lifespan_context(app):
        headers = {"Authorization": f"Bearer {gateway.first_admin_key}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=headers
        ) as client:
            made = await client.post(
                "/v1/images/generations", json={"prompt": "traced", "size": "256x256"}
            )
            assert made.status_code == 200, made.text
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert "POST /v1/images/generations" in spans
    attempt = spans["job.attempt"]
    assert attempt.attributes is not None
    assert attempt.attributes["job_id"] == made.json()["job_id"]
    assert attempt.attributes["model"] == "mock-image"
