"""What Gemini and Vertex AI share: Google's error shape and its safety vocabulary."""

from __future__ import annotations

import re
from typing import Any

import httpx

from imagegate.errors import ImagegateError, TransientUpstreamError
from imagegate.providers.common import refusal, rejected_param
from imagegate.providers.http import auth_error, generic_error, json_body

# Candidate finish reasons and prompt block reasons that are a safety refusal.
REFUSAL_REASONS = frozenset(
    {
        "SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "OTHER",
    }
)  # fmt: skip
_DURATION = re.compile(r"^([\d.]+)s$")


def _retry_delay(details: list[Any]) -> float | None:
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith(
            "google.rpc.RetryInfo"
        ):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def _field(details: list[Any]) -> str | None:
    for detail in details:
        if not isinstance(detail, dict):
            continue
        for violation in detail.get("fieldViolations") or []:
            if isinstance(violation, dict) and violation.get("field"):
                return str(violation["field"]).split(".")[-1]
    return None


def map_google_error(provider: str, hint: str, response: httpx.Response) -> ImagegateError:
    """``{"error": {code, message, status, details}}`` into our tree."""
    body = json_body(response)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(body, list) and body and isinstance(body[0], dict):
        error = body[0].get("error")
    error = error if isinstance(error, dict) else {}
    message = str(error.get("message") or response.text[:300])
    raw_details = error.get("details")
    details: list[Any] = raw_details if isinstance(raw_details, list) else []
    if response.status_code in (401, 403):
        return auth_error(provider, hint, response)
    if response.status_code == 429:
        return TransientUpstreamError(
            f"{provider} is rate limiting requests: {message}",
            code="upstream_rate_limited",
            retry_after=_retry_delay(details),
            extra={"provider": provider},
        )
    if response.status_code == 400:
        if "safety" in message.lower() or "responsible ai" in message.lower():
            return refusal(provider, message)
        return rejected_param(provider, _field(details), message)
    return generic_error(provider, response, message)


def check_refusal(provider: str, body: dict[str, Any]) -> None:
    """Raise a refusal when the prompt was blocked or every candidate stopped for safety."""
    feedback = body.get("promptFeedback")
    if isinstance(feedback, dict) and feedback.get("blockReason"):
        reason = str(feedback["blockReason"])
        message = feedback.get("blockReasonMessage")
        raise refusal(provider, f"prompt blocked: {reason}" + (f" ({message})" if message else ""))
    candidates = body.get("candidates") or []
    reasons = [
        (str(c.get("finishReason")), c.get("finishMessage"))
        for c in candidates
        if isinstance(c, dict) and c.get("finishReason") in REFUSAL_REASONS
    ]
    if reasons and len(reasons) == len(candidates):
        reason, message = reasons[0]
        raise refusal(provider, f"output blocked: {reason}" + (f" ({message})" if message else ""))
