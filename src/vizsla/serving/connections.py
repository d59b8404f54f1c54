"""Connection bounds uvicorn lacks: how long a request's headers and body may take, how many connections.

uvicorn (0.3x-0.5x) times only idle keep-alive connections: a client that trickles its headers, or stops
half-way through a body it announced, holds its connection (and the body received so far) forever. The
protocol classes here are uvicorn's own httptools and h11 protocols with one timer per connection:
- headers: from the connection's (or a keep-alive request's) first byte until the headers are complete,
  at most `header_timeout_s`; a connection that sends nothing counts from its opening;
- body: at most `body_idle_timeout_s` between two pieces of the body, and at most `body_bound_s(size)` in
  all (a base plus the announced size at a minimum rate: big uploads on slow links still get through).
A connection past a bound is answered 408 (when no response has started) and closed, with one log line;
a request whose body was cut sees a disconnect with CUT_KEY in its scope, so the app counts a timeout,
not a client that went away. Past `max_connections` open connections a request's scope gets OVER_LIMIT_KEY
and the app answers 503 (SageMaker's answer when a container is saturated).

The app hands its limits to the protocol through the ASGI lifespan state (STATE_KEY), so every worker
process of `vizsla serve --workers N` uses its own app's settings.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("vizsla.serving")

STATE_KEY = "vizsla.connection_guard"  # lifespan state: the ConnectionGuard of the app
CUT_KEY = "vizsla.cut"  # request scope: (reason, message) when the guard cut the request's body
OVER_LIMIT_KEY = "vizsla.over_limit"  # request scope: the connection limit was passed

HEADERS, BODY, IDLE = "headers", "body", "idle"


@dataclass(frozen=True)
class ConnectionLimits:
    """Read-time bounds (seconds, bytes per second) and the open-connection limit."""

    header_timeout_s: float = 10.0
    body_idle_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    body_min_bytes_per_s: float = 64 * 1024
    max_body_bytes: int = 6 * 1024 * 1024  # the payload limit: a larger body is refused, not waited for
    max_connections: int = 512

    def body_bound_s(self, size: int | None) -> float:
        """Total time a body of SIZE bytes (None: chunked, unknown) may take to arrive."""
        announced = self.max_body_bytes if size is None else min(size, self.max_body_bytes)
        return self.body_timeout_s + announced / self.body_min_bytes_per_s


@dataclass
class ConnectionGuard:
    """What the protocol reads from the lifespan state: the limits and a counter for cut connections."""

    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    on_cut: Callable[[str], None] = lambda reason: None


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return max(0, int(value))
            except ValueError:
                return None
    return None


def raw_response(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 error response with `connection: close`, for a connection that has no ASGI cycle."""
    body = json.dumps({"error": message, "code": status}).encode()
    head = (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _GuardMixin:
    """Header/body timers and the connection limit over a uvicorn HTTP/1.1 protocol (httptools or h11)."""

    # provided by uvicorn's protocol classes
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any
    flow: Any
    connections: set[Any]
    app_state: dict[str, Any]
    client: tuple[str, int] | None

    _guard: ConnectionGuard
    _timer: asyncio.TimerHandle | None = None
    _phase: str = IDLE
    _deadline: float = 0.0
    _last_data: float = 0.0
    _seen_cycle: Any = None
    _body_bound_s: float = 0.0

    def _body_done(self) -> bool:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        guard = self.app_state.get(STATE_KEY)
        self._guard = guard if isinstance(guard, ConnectionGuard) else ConnectionGuard()
        self._enter(HEADERS, self.loop.time() + self._guard.limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        now = self._last_data = self.loop.time()
        if self._phase == IDLE:  # the first byte of the next request
            self._enter(HEADERS, now + self._guard.limits.header_timeout_s)
        super().data_received(data)  # type: ignore[misc]
        if self.transport.is_closing():
            self._cancel()
            return
        cycle = self.cycle
        if cycle is not None and cycle is not self._seen_cycle:  # a request's headers are complete
            self._seen_cycle = cycle
            limits = self._guard.limits
            if len(self.connections) > limits.max_connections:
                cycle.scope[OVER_LIMIT_KEY] = limits.max_connections  # read by the app before it starts
            self._body_bound_s = limits.body_bound_s(_content_length(cycle.scope["headers"]))
            self._enter(BODY, now + self._body_bound_s)
        if self._phase == BODY and self._body_done():
            self._enter(IDLE, 0.0)

    # ------------------------------------------------------------ timers

    def _enter(self, phase: str, deadline: float) -> None:
        self._cancel()
        self._phase, self._deadline = phase, deadline
        if phase != IDLE:
            self._timer = self.loop.call_at(self._next_check(), self._check)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _next_check(self) -> float:
        if self._phase == BODY:
            return min(self._deadline, self._last_data + self._guard.limits.body_idle_timeout_s)
        return self._deadline

    def _check(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self._phase == IDLE:
            return
        now = self.loop.time()
        limits = self._guard.limits
        cycle = self.cycle
        if self._phase == HEADERS and cycle is not None and not cycle.response_complete:
            # a pipelined request waits for the one in flight: that wait is ours, not the client's
            self._deadline = now + limits.header_timeout_s
        elif self._phase == BODY and self.flow is not None and self.flow.read_paused:
            # we stopped reading (the app has not taken the body yet, or a pipelined request waits): that
            # time is ours, so the body's clocks restart
            self._last_data = now
            self._deadline = max(self._deadline, now + self._body_bound_s)
        if now >= self._deadline:
            if self._phase == HEADERS:
                message = f"request headers not complete within {limits.header_timeout_s:g} s"
                self._cut("header_timeout", message)
                return
            self._cut(
                "body_timeout",
                f"request body not complete within {self._body_bound_s:.0f} s ({limits.body_timeout_s:g} s "
                f"+ the announced size at {limits.body_min_bytes_per_s / 1024:g} KiB/s)",
            )
        elif self._phase == BODY and now >= self._last_data + limits.body_idle_timeout_s:
            self._cut("body_timeout", f"no request body bytes for {limits.body_idle_timeout_s:g} s")
        else:
            self._timer = self.loop.call_at(self._next_check(), self._check)

    def _cut(self, reason: str, message: str) -> None:
        """Answer 408 where no response has started, close the connection, tell the app and the log."""
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.warning("closed the connection of %s: %s", client, message)
        self._guard.on_cut(reason)
        cycle = self.cycle
        if self._phase == BODY and cycle is not None:
            if not cycle.response_complete:  # the app is still reading: it sees a disconnect, marked as ours
                cycle.scope[CUT_KEY] = (reason, message)
                if not cycle.response_started:
                    self.transport.write(raw_response(408, message))
                cycle.disconnected = True  # receive() returns http.disconnect; the app's answer is dropped
                cycle.message_event.set()
            # else the answer went out before the body was in (an early 401 or 413): just close
        elif cycle is None or cycle.response_complete:  # between requests: no response is in flight
            self.transport.write(raw_response(408, message))
        self._phase = IDLE
        self.transport.close()


class GuardedH11Protocol(_GuardMixin, H11Protocol):
    """uvicorn's h11 protocol with header/body read-time bounds and the connection limit."""

    def _body_done(self) -> bool:
        return self.conn.their_state is not h11.SEND_BODY


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is optional: h11 serves then
    HttpToolsProtocol = None  # type: ignore[assignment,misc]
    GuardedHttpToolsProtocol: Any = None
else:

    class GuardedHttpToolsProtocol(_GuardMixin, HttpToolsProtocol):  # type: ignore[no-redef]
        """uvicorn's httptools protocol with header/body read-time bounds and the connection limit."""

        _message_done = False

        def on_message_begin(self) -> None:
            self._message_done = False
            super().on_message_begin()

        def on_message_complete(self) -> None:
            self._message_done = True
            super().on_message_complete()

        def _body_done(self) -> bool:
            return self._message_done


def guarded_protocol(http_parser: str) -> type[asyncio.Protocol]:
    """The guarded protocol class for uvicorn's `http` setting: "httptools" or "h11"."""
    if http_parser == "httptools" and GuardedHttpToolsProtocol is not None:
        return GuardedHttpToolsProtocol  # type: ignore[no-any-return]
    if http_parser in ("httptools", "h11"):
        return GuardedH11Protocol
    raise ValueError(f"unknown HTTP parser {http_parser!r}: httptools or h11")


class ConnectionLimitMiddleware:
    """Pure ASGI: a request the protocol marked over the connection limit gets 503 and a closed connection."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        limit = scope.get(OVER_LIMIT_KEY) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {"error": f"the server holds its limit of {limit} open connections; retry shortly", "code": 503}
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1"),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
