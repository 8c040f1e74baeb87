"""Log lines as JSON objects (``IMAGEGATE_LOG_FORMAT=json``), each with the request id and
the job id of the request or job it is about."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from imagegate.observe import context

# uvicorn's loggers keep handlers of their own (and do not propagate).
_SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``job_id`` to every record (None where there is none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = context.request_id.get()
        if getattr(record, "job_id", None) is None:
            record.job_id = context.job_id.get()
        return True


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        ["asctime", "levelname", "name", "message", "request_id", "job_id"],
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        json_ensure_ascii=False,
    )


def configure(log_format: str, level: str) -> None:
    """Send imagegate's and the server's log lines to stderr in ``log_format``."""
    if log_format != "json":
        return
    formatter = json_formatter()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per upstream request is the access log of the client: too much.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in _SERVER_LOGGERS:
        logger = logging.getLogger(name)
        for existing in logger.handlers:
            existing.setFormatter(formatter)
            existing.addFilter(ContextFilter())
