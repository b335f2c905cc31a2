"""HTTP/1.1 over a socket the line check owns (so it can read the socket's TCP_INFO): requests, keep-alive,
a streamed chunked upload and a counted download. Only what the line check's own endpoints need."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from chairside.netcheck import tcpinfo


class WireError(Exception):
    """The connection failed or the server's answer was not what the check expects."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    tls: bool
    base_path: str

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the server must be an http:// or https:// address, not {url!r}")
        tls = parts.scheme == "https"
        return cls(parts.hostname, parts.port or (443 if tls else 80), tls, parts.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        default = 443 if self.tls else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class Connection:
    """One TCP (and TLS, for https) connection to the server; requests one after another (keep-alive)."""

    def __init__(self, target: Target, code: str, *, timeout: float = 10.0) -> None:
        self.target, self.code, self.timeout = target, code, timeout
        raw = socket.create_connection((target.host, target.port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tcp = raw  # TCP_INFO is read from the TCP socket (under TLS too)
        self.sock: socket.socket = raw
        if target.tls:
            self.sock = ssl.create_default_context().wrap_socket(raw, server_hostname=target.host)
        self._buf = b""
        self.sent = 0  # bytes written to the socket by us (TLS records counted as plaintext)
        self.received = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def limit_unsent(self, nbytes: int) -> None:
        """Keep at most `nbytes` not yet sent queued in the socket (TCP_NOTSENT_LOWAT, Linux): the stream
        stops promptly when the test does, instead of draining megabytes of send buffer into the next one."""
        option = getattr(socket, "TCP_NOTSENT_LOWAT", 25 if hasattr(socket, "TCP_INFO") else None)
        if option is not None:
            with contextlib.suppress(OSError):
                self.tcp.setsockopt(socket.IPPROTO_TCP, option, nbytes)

    def info(self) -> tcpinfo.TcpInfo:
        return tcpinfo.read(self.tcp)

    def _head(self, method: str, path: str, extra: dict[str, str]) -> bytes:
        lines = [f"{method} {self.target.base_path}{path} HTTP/1.1", f"Host: {self.target.host_header}",
                 f"X-Netcheck-Code: {self.code}", "User-Agent: chairside-netcheck"]
        lines += [f"{k}: {v}" for k, v in extra.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise WireError(f"sending failed: {e}") from e
        self.sent += len(data)

    def _fill(self) -> None:
        try:
            data = self.sock.recv(65536)
        except OSError as e:
            raise WireError(f"receiving failed: {e}") from e
        if not data:
            raise WireError("the server closed the connection")
        self.received += len(data)
        self._buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self._buf:
            if len(self._buf) > 65536:
                raise WireError("a header line is too long")
            self._fill()
        line, _, self._buf = self._buf.partition(b"\r\n")
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def read_head(self) -> tuple[int, dict[str, str]]:
        status_line = self._line().decode("latin-1")
        try:
            status = int(status_line.split(" ", 2)[1])
        except (IndexError, ValueError):
            raise WireError(f"not an HTTP answer: {status_line[:80]!r}") from None
        headers: dict[str, str] = {}
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def read_body(self, headers: dict[str, str], limit: int = 1 << 20) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():  # trailers
                        pass
                    return body
                body += self._exactly(size)
                self._exactly(2)
                if len(body) > limit:
                    raise WireError("the answer is too long")
        n = int(headers.get("content-length", "0"))
        if n > limit:
            raise WireError("the answer is too long")
        return self._exactly(n)

    def request(self, method: str, path: str, body: Any = None) -> Response:
        extra = {}
        payload = b""
        if body is not None:
            payload = json.dumps(body).encode()
            extra = {"Content-Type": "application/json", "Content-Length": str(len(payload))}
        elif method in ("POST", "PUT"):
            extra = {"Content-Length": "0"}
        self.send(self._head(method, path, extra) + payload)
        status, headers = self.read_head()
        return Response(status, headers, self.read_body(headers))

    # --- the bulk streams ---

    def start_upload(self, path: str) -> None:
        self.send(self._head("POST", path, {"Transfer-Encoding": "chunked",
                                            "Content-Type": "application/octet-stream"}))

    def upload_chunk(self, data: bytes) -> None:
        self.send(b"%x\r\n" % len(data) + data + b"\r\n")

    def finish_upload(self) -> Response:
        self.send(b"0\r\n\r\n")
        status, headers = self.read_head()
        return Response(status, headers, self.read_body(headers))

    def start_download(self, path: str) -> tuple[int, dict[str, str]]:
        self.send(self._head("GET", path, {}))
        return self.read_head()

    def download_some(self) -> int:
        """Read what has arrived of a download (bytes counted, not kept); 0 at its end."""
        if self._buf:
            n, self._buf = len(self._buf), b""
            return n
        try:
            data = self.sock.recv(262144)
        except OSError as e:
            raise WireError(f"receiving failed: {e}") from e
        self.received += len(data)
        return len(data)
