"""The exception tree. Every error a client sees is one of these, in one shape.

ImagegateError                      any error with an HTTP status and a stable code
├── InvalidRequest (400)            bad input: names the parameter and what is allowed
│   ├── InvalidParameter            invalid_parameter / too_many_references / image_url_required / …
│   └── ContentPolicyViolation      a provider refused the prompt or the output
├── AuthenticationError (401)       missing or wrong API key
├── InsufficientCredits (402)       the estimate does not fit the available credits
├── PermissionDenied (403)          signed URL expired or forged, role too low, model not enabled
├── NotFound (404)                  model_not_found, job_not_found, file_not_found
├── Conflict (409)                  idempotency in flight, governance rules
├── PayloadTooLarge (413)
├── UpstreamError (502/503/504)     a provider failed after retries
└── GenerationFailed (500)          a job failed for a reason of our own
"""

from __future__ import annotations

from typing import Any


class ImagegateError(Exception):
    status_code = 500
    type = "server_error"
    code = "internal_error"
    # False: clients must not retry (sent as ``x-should-retry: false``, which the OpenAI
    # SDKs honour); None: the status decides.
    retryable: bool | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        extra: dict[str, Any] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.param = param
        self.extra = extra or {}

    def to_body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }
        error.update(self.extra)
        return {"error": error}


class InvalidRequest(ImagegateError):
    status_code = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidParameter(InvalidRequest):
    code = "invalid_parameter"


class ContentPolicyViolation(InvalidRequest):
    code = "content_policy_violation"


class AuthenticationError(ImagegateError):
    status_code = 401
    type = "authentication_error"
    code = "invalid_api_key"


class InsufficientCredits(ImagegateError):
    status_code = 402
    type = "insufficient_credits"
    code = "insufficient_credits"


class PermissionDenied(ImagegateError):
    status_code = 403
    type = "permission_error"
    code = "permission_denied"


class NotFound(ImagegateError):
    status_code = 404
    type = "invalid_request_error"
    code = "not_found"


class Conflict(ImagegateError):
    status_code = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(ImagegateError):
    status_code = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class UpstreamError(ImagegateError):
    status_code = 502
    type = "upstream_error"
    code = "upstream_error"


class GenerationFailed(ImagegateError):
    status_code = 500
    type = "server_error"
    code = "generation_failed"


class ProviderNotConfigured(ImagegateError):
    """A provider's credentials are missing; the message says what to set."""

    status_code = 503
    type = "upstream_error"
    code = "provider_not_configured"
    retryable = False  # a credential does not appear by retrying


class TransientUpstreamError(UpstreamError):
    """Timeouts, 429s and 5xx: worth another attempt after ``retry_after`` seconds."""

    code = "upstream_unavailable"
    status_code = 503

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


_JOB_ERROR_STATUS = {
    "content_policy_violation": (400, ContentPolicyViolation),
    "invalid_parameter": (400, InvalidParameter),
    "image_generation_disabled": (403, PermissionDenied),
    "model_not_enabled": (403, PermissionDenied),
    "region_not_allowed": (403, PermissionDenied),
    "provider_not_configured": (503, ProviderNotConfigured),
    "upstream_timeout": (504, UpstreamError),
    "upstream_unavailable": (503, UpstreamError),
    "upstream_rate_limited": (503, UpstreamError),
    "upstream_error": (502, UpstreamError),
    "upstream_empty_result": (502, UpstreamError),
}


def error_for_job(
    code: str | None, message: str | None, provider_reason: str | None
) -> ImagegateError:
    """The error a synchronous caller gets for a job that failed with ``code``."""
    status, cls = _JOB_ERROR_STATUS.get(code or "", (500, GenerationFailed))
    extra = {"provider_reason": provider_reason} if provider_reason else None
    return cls(
        message or "The generation failed.",
        code=code or "generation_failed",
        status_code=status,
        extra=extra,
    )
