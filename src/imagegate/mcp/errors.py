"""A tool call that cannot go on: answered as a tool error (``isError: true``)."""

from __future__ import annotations

from typing import Any

import httpx


class ToolError(Exception):
    """What went wrong, in the API's error shape: a stable code and the parameter."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid_parameter",
        param: str | None = None,
        status: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.status = status
        self.extra = extra or {}

    @classmethod
    def from_response(cls, response: httpx.Response) -> ToolError:
        """The API's ``{"error": {…}}`` answer as a tool error."""
        try:
            error = response.json()["error"]
            message, code = str(error["message"]), str(error.get("code") or "error")
            param = error.get("param")
            extra = {k: v for k, v in error.items() if k not in ("message", "code", "param")}
        except (ValueError, KeyError, TypeError):
            message, code, param, extra = response.text[:500], "error", None, {}
        return cls(message, code=code, param=param, status=response.status_code, extra=extra)

    def text(self) -> str:
        where = f" (parameter {self.param!r})" if self.param else ""
        status = f"{self.status} " if self.status else ""
        return f"Error {status}{self.code}{where}: {self.message}"

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "code": self.code, "param": self.param} | self.extra
