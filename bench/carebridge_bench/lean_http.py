"""The load generator's HTTP/1.1 client: kept-alive connections per service, requests written
as bytes, responses parsed by httptools (C).

The generator shares the 2 cores with the system it measures, so each of its milliseconds is
one the system does not get. httpx built some dozens of Python objects per request (URL,
headers, request, response, transport and pool state) and cost ~20-25 ms of CPU per journey;
this client writes one bytes object and reads into one buffer.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httptools

READ_SIZE = 65536


class HttpError(Exception):
    """The connection failed or closed before a whole response arrived."""


@dataclass(frozen=True, slots=True)
class Response:
    status_code: int
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class _Reply:
    """httptools' callbacks: whether the connection stays open (read once the headers are in:
    the parser forgets it at the end of the message), the body, the end of the message."""

    __slots__ = ("body", "complete", "keep_alive", "parser")

    def __init__(self) -> None:
        self.body = bytearray()
        self.complete = False
        self.keep_alive = False
        self.parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def exchange(self, request: bytes) -> tuple[Response, bool]:
        """Send `request`, read its response; also whether the connection may be reused."""
        self.writer.write(request)
        reply = _Reply()
        parser = reply.parser
        while not reply.complete:
            data = await self.reader.read(READ_SIZE)
            if not data:
                raise HttpError("the server closed the connection before answering")
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as exc:
                raise HttpError(f"unreadable response: {exc}") from None
        return Response(parser.get_status_code(), bytes(reply.body)), reply.keep_alive

    def close(self) -> None:
        self.writer.close()


class LeanHttp:
    """Requests to a few base URLs (one per service); idle connections are kept and reused."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}
        self._hosts: dict[str, tuple[str, int, bytes]] = {}

    def _target(self, base_url: str) -> tuple[str, int, bytes]:
        found = self._hosts.get(base_url)
        if found is None:
            parts = urlsplit(base_url)
            if parts.scheme != "http" or parts.hostname is None:
                raise ValueError(f"only http://host:port base URLs are supported, not {base_url}")
            port = parts.port or 80
            found = (parts.hostname, port, f"Host: {parts.hostname}:{port}\r\n".encode())
            self._hosts[base_url] = found
        return found

    async def request(
        self,
        method: str,
        base_url: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        headers: str = "",
    ) -> Response:
        """`headers`: extra header lines, each ending in CRLF."""
        host, port, host_line = self._target(base_url)
        target = f"{path}?{urlencode(params)}" if params else path
        body = b"" if json_body is None else json.dumps(json_body).encode()
        head = f"{method} {target} HTTP/1.1\r\n{headers}"
        if json_body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        request = head.encode() + host_line + b"\r\n" + body
        idle = self._idle.setdefault((host, port), deque())
        async with asyncio.timeout(self.timeout):
            if idle:
                kept = idle.pop()
                try:
                    return self._done(idle, kept, await kept.exchange(request))
                except (HttpError, OSError):
                    kept.close()  # idle too long, the server closed it: once more, on a new one
            try:
                fresh = _Connection(*await asyncio.open_connection(host, port))
            except OSError as exc:
                raise HttpError(f"{base_url}: {type(exc).__name__}: {exc}") from None
            try:
                return self._done(idle, fresh, await fresh.exchange(request))
            except OSError as exc:
                fresh.close()
                raise HttpError(f"{method} {base_url}{path}: {type(exc).__name__}") from None
            except BaseException:
                fresh.close()
                raise

    @staticmethod
    def _done(
        idle: deque[_Connection], connection: _Connection, answer: tuple[Response, bool]
    ) -> Response:
        response, keep = answer
        if keep:
            idle.append(connection)
        else:
            connection.close()
        return response

    async def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
