"""The request and the job that the code running now works for, for log lines."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("imagegate_request_id", default=None)
job_id: ContextVar[str | None] = ContextVar("imagegate_job_id", default=None)

_ACCEPTED = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def request_id_from(header: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is a plain token, else a new one."""
    if header and _ACCEPTED.fullmatch(header):
        return header
    return uuid.uuid4().hex
