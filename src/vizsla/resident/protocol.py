"""Messages between a client and a resident worker: length-prefixed JSON over a Unix socket.

The client's first message carries its stdin, stdout and stderr as file descriptors (SCM_RIGHTS), so the
job writes to the user's terminal or pipes directly, with nothing relayed."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

_HEADER = struct.Struct("!I")
MAX_MESSAGE = 16 * 1024 * 1024


class ProtocolError(Exception):
    """The other side closed the connection or sent something that is not a message."""


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    payload = _HEADER.pack(len(data)) + data
    if fds:
        sent = socket.send_fds(sock, [payload], fds)
        payload = payload[sent:]
    if payload:
        sock.sendall(payload)


def receive(sock: socket.socket, max_fds: int = 0) -> tuple[dict[str, Any], list[int]]:
    """One message and the descriptors sent with it (at most MAX_FDS). Reads exactly one message: the
    next one stays in the socket."""
    fds: list[int] = []
    if max_fds:  # the descriptors ride on the message's first bytes
        data, fds, _, _ = socket.recv_fds(sock, _HEADER.size, max_fds)
        if not data:
            raise ProtocolError("connection closed")
        header = data + _read_exactly(sock, _HEADER.size - len(data))
    else:
        header = _read_exactly(sock, _HEADER.size)
    (length,) = _HEADER.unpack(header)
    if length > MAX_MESSAGE:
        raise ProtocolError(f"message of {length} bytes")
    try:
        message = json.loads(_read_exactly(sock, length))
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("not a JSON object")
    return message, fds


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray()
    while len(buffer) < size:
        chunk = sock.recv(size - len(buffer))
        if not chunk:
            raise ProtocolError("connection closed")
        buffer += chunk
    return bytes(buffer)
