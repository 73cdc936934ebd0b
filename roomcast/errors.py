"""Errors that reach clients: an HTTP status, a PROTOCOL error code, a human message."""

from __future__ import annotations

from typing import Any


def envelope(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """PROTOCOL §1's error envelope."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"error": error}


class ApiError(Exception):
    """Raised anywhere below the transport; REST and /ws turn it into their error shape."""

    status = 400
    code = "validation_error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 details: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.status = status or self.status
        self.details = details
        self.headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        return envelope(self.code, self.message, self.details)


class BadRequest(ApiError):
    status, code = 400, "validation_error"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class TooLarge(ApiError):
    status, code = 413, "too_large"


class UnsupportedType(ApiError):
    status, code = 415, "unsupported_type"


class RateLimited(ApiError):
    status, code = 429, "rate_limited"

    def __init__(self, retry_after_s: float, message: str = "too many requests; slow down") -> None:
        # A wait under a millisecond rounds to 0 at the callers: "retry after 0" would invite an
        # instant retry that is refused again, so a refusal always asks for at least 1 ms.
        retry_after_s = max(retry_after_s, 0.001)
        seconds = max(1, int(retry_after_s + 0.999))
        super().__init__(message, details={"retry_after": retry_after_s}, headers={"Retry-After": str(seconds)})
        self.retry_after_s = retry_after_s


class Unavailable(ApiError):
    status, code = 503, "unavailable"


class DependencyUnavailable(Unavailable):
    """The database or the stream backend cannot be reached: a state to wait out, not a bug.

    Clients see 503 / an `unavailable` error frame naming the dependency; actors back
    off and retry. `str()` is the technical detail for the log, never sent to clients.
    """

    dependency = "dependency"

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"the {self.dependency} is unavailable; try again later",
                         details={"dependency": self.dependency}, headers={"Retry-After": "1"})
        self.detail = detail

    def __str__(self) -> str:
        return self.detail or self.message


class StartupError(Exception):
    """Start-up cannot go on; the message is one line that says what is wrong and how to fix it."""
