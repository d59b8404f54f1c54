"""A request the server refuses: an HTTP status, a reason for the caller and a metrics label."""

from __future__ import annotations

import json
from typing import Any


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
    499: "client_closed",
    503: "overloaded",
    504: "timeout",
}


def load_json(data: bytes | str, what: str = "JSON") -> Any:
    """json.loads where every fault is the client's: 400 for invalid JSON, bad UTF-8 or nesting too deep."""
    try:
        return json.loads(data)
    except RecursionError:
        raise RequestError(
            400, f"invalid {what}: nested too deeply to parse (send at most a few levels of lists/objects)"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"invalid {what}: {exc}") from None
