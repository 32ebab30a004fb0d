"""Minimal raw-socket HTTP client: what the demos and tests need, nothing more."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def connect(address: tuple[str, int], timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request(path: str = "/hello", method: str = "GET", body: bytes = b"",
            headers: dict[str, str] | None = None, version: str = "HTTP/1.1") -> bytes:
    lines = [f"{method} {path} {version}", "Host: localhost"]
    for key, value in (headers or {}).items():
        lines.append(f"{key}: {value}")
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Reader:
    """Reads whole responses off a socket, keeping leftovers for the next one."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.pending = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.pending += chunk
        return bool(chunk)

    def response(self) -> Response | None:
        """The next response, or None if the server closed before sending one."""
        while b"\r\n\r\n" not in self.pending:
            if not self._fill():
                return None
        head, _, self.pending = self.pending.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.pending) < length:
            if not self._fill():
                break
        body, self.pending = self.pending[:length], self.pending[length:]
        return Response(int(status_line.split()[1]), headers, body)


def get(address: tuple[str, int], path: str = "/hello", timeout: float = 10.0) -> Response:
    with connect(address, timeout) as sock:
        sock.sendall(request(path, headers={"Connection": "close"}))
        response = Reader(sock).response()
        assert response is not None, f"no response to GET {path}"
        return response


def timed_get(address: tuple[str, int], path: str = "/hello",
              timeout: float = 30.0) -> tuple[Response, float]:
    start = time.monotonic()
    response = get(address, path, timeout)
    return response, time.monotonic() - start
