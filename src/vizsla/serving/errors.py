"""A request the server refuses: an HTTP status, a reason for the caller and a metrics label."""

from __future__ import annotations


class RequestError(Exception):
    """Raised anywhere in a request's pipeline; the app turns it into the route's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
        aws_code: str | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.reason = reason or _REASONS.get(status, "error")
        self.headers = headers or {}
        self.aws_code = aws_code  # the x-amzn-ErrorType on the runtime path, when not ModelError
        super().__init__(message)


_REASONS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    406: "not_acceptable",
    408: "timeout",
    413: "too_large",
    415: "unsupported_type",
    503: "overloaded",
    504: "timeout",
}
