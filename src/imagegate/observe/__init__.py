"""What an operator watches: Prometheus metrics, JSON logs with request and job ids,
and (with the ``otel`` extra) OpenTelemetry traces."""
