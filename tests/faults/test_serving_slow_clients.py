"""Slow, stalled and unauthenticated clients against a real server on a real port, with both HTTP parsers.

Bounds are short here (1 s headers, 1 s body idle, ~1.5 s body total) so the suite stays fast; every
client socket has a timeout, so a server that never cuts a client fails the test instead of hanging it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from vizsla.serving.settings import ServeSettings
from vizsla.serving.testing import running_server

pytestmark = [pytest.mark.slow, pytest.mark.integration]

HEADER_S = 1.0
IDLE_S = 1.0
BODY_S = 1.5
RATE = 1_000_000.0  # bytes/s: a 1000-byte body adds 1 ms to its bound
MAX_CONNECTIONS = 12
KEY = "s3cret-key"
SLACK_S = 1.5  # timer and scheduling slack on 2 busy cores
CLIENT_TIMEOUT_S = 8.0  # a client waits this long at most: old servers never answered


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(request: pytest.FixtureRequest, serving_job: Path) -> Iterator[tuple[str, int]]:
    settings = ServeSettings(
        model_path=serving_job,
        header_timeout_s=HEADER_S,
        body_idle_timeout_s=IDLE_S,
        body_timeout_s=BODY_S,
        body_min_rate_bytes_s=RATE,
        max_connections=MAX_CONNECTIONS,
        api_keys=[KEY],
    )
    with running_server(settings, http=request.param) as (url, _):
        yield url, int(url.rsplit(":", 1)[1])


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT_S)
    sock.settimeout(CLIENT_TIMEOUT_S)
    return sock


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the client's timeout)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)


def _post_head(length: int, *, key: bool = True) -> bytes:
    auth = f"X-Api-Key: {KEY}\r\n" if key else ""
    return (
        f"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: image/jpeg\r\n{auth}"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _trickle_headers(port: int, results: list, index: int) -> None:
    """One byte of a request's headers every 0.2 s, until the server closes the connection."""
    sock = _connect(port)
    started = time.monotonic()
    head = _post_head(10)
    try:
        for byte in head[:-4]:  # never the blank line that ends the headers
            sock.sendall(bytes([byte]))
            time.sleep(0.2)
            if time.monotonic() - started > CLIENT_TIMEOUT_S:
                break
    except OSError:  # the server closed the connection while we were sending: what we want
        pass
    answer = _answer(sock)
    results[index] = (time.monotonic() - started, answer)
    sock.close()


def _stall_body(port: int, sent: bytes, length: int, *, every_s: float | None = None) -> tuple[float, bytes]:
    """Announce LENGTH body bytes, send SENT, then nothing (or one more byte every EVERY_S)."""
    sock = _connect(port)
    started = time.monotonic()
    sock.sendall(_post_head(length) + sent)
    if every_s is not None:
        try:
            for _ in range(length - len(sent) - 1):
                time.sleep(every_s)
                sock.sendall(b"0")
                if time.monotonic() - started > CLIENT_TIMEOUT_S:
                    break
        except OSError:
            pass
    answer = _answer(sock)
    sock.close()
    return time.monotonic() - started, answer


def test_trickled_headers_and_silent_connections_are_cut_within_the_bound(server):
    url, port = server
    results: list = [None] * 8
    threads = [threading.Thread(target=_trickle_headers, args=(port, results, i)) for i in range(8)]
    for thread in threads:
        thread.start()
    silent = _connect(port)  # connects, never sends a byte
    started = time.monotonic()
    silent_answer = _answer(silent)
    silent_s = time.monotonic() - started
    for thread in threads:
        thread.join()
    for elapsed, answer in results:
        assert elapsed <= HEADER_S + SLACK_S, f"a header trickler was held {elapsed:.1f} s"
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert silent_s <= HEADER_S + SLACK_S and silent_answer.startswith(b"HTTP/1.1 408"), silent_s
    metrics = httpx.get(f"{url}/metrics", headers={"X-Api-Key": KEY}).text
    assert 'vizsla_connections_cut_total{reason="header_timeout"}' in metrics


def test_a_stalled_body_gets_408_within_the_idle_bound(server, jpeg):
    url, port = server
    elapsed, answer = _stall_body(port, b"0123456789", 1000)  # 10 of 1,000 announced bytes
    assert answer.startswith(b"HTTP/1.1 408"), answer[:120]
    assert b"no request body bytes for 1 s" in answer
    assert elapsed <= IDLE_S + SLACK_S, f"the stalled body was held {elapsed:.1f} s"
    with httpx.Client(base_url=url, headers={"X-Api-Key": KEY}) as http:
        assert http.post("/invocations", content=jpeg).status_code == 200  # the server keeps serving
        metrics = http.get("/metrics").text
    assert 'vizsla_errors_total{reason="body_timeout",route="/invocations"}' in metrics
    assert 'reason="model_error"' not in metrics


def test_a_trickled_body_is_cut_at_its_total_bound(server):
    _, port = server
    # a byte every 0.4 s never trips the 1 s idle bound; the total bound (1.5 s + 1000 B at 1 MB/s) does
    elapsed, answer = _stall_body(port, b"0", 1000, every_s=0.4)
    assert answer.startswith(b"HTTP/1.1 408") and b"not complete within" in answer, answer[:160]
    assert BODY_S - 0.1 <= elapsed <= BODY_S + SLACK_S, elapsed


def test_a_slow_but_steady_upload_and_keep_alive_pauses_are_served(server, jpeg):
    _, port = server
    sock = _connect(port)
    sock.sendall(_post_head(len(jpeg)))
    pieces = [jpeg[i : i + len(jpeg) // 3 + 1] for i in range(0, len(jpeg), len(jpeg) // 3 + 1)]
    for piece in pieces:  # pauses under the idle bound, all within the total bound
        time.sleep(0.3)
        sock.sendall(piece)
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200"), first[:200]
    time.sleep(HEADER_S + 0.3)  # an idle keep-alive connection between requests is not a slow client
    sock.sendall(b"GET /ping HTTP/1.1\r\nHost: test\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    sock.close()


def test_401_comes_before_the_body_is_read(server):
    _, port = server
    sock = _connect(port)
    sock.settimeout(3.0)
    started = time.monotonic()
    sock.sendall(_post_head(5_000_000, key=False))  # announces 5 MB, sends none of it
    answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:120]
    assert time.monotonic() - started < 1.0
    sock.close()
    wrong = _connect(port)
    wrong.sendall(_post_head(5_000_000, key=False).replace(b"\r\n\r\n", b"\r\nX-Api-Key: nope\r\n\r\n"))
    assert wrong.recv(65536).startswith(b"HTTP/1.1 403")
    wrong.close()


def test_connections_beyond_the_limit_get_503(server):
    url, port = server
    held = [_connect(port) for _ in range(MAX_CONNECTIONS)]
    try:
        over = httpx.get(f"{url}/ping", timeout=CLIENT_TIMEOUT_S)
        assert over.status_code == 503, over.text
        assert "limit of 12 open connections" in over.json()["error"]
        assert over.headers.get("retry-after") == "1"
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while httpx.get(f"{url}/ping").status_code != 200:  # the server frees them as they close
        assert time.monotonic() < deadline
        time.sleep(0.05)
