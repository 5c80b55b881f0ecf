"""The load generator's HTTP client against a real HTTP/1.1 server on a socket (uvicorn, as
the services run): bodies both ways, kept-alive connections, a connection the server closed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from carebridge_bench.lean_http import HttpError, LeanHttp

Scope = dict[str, Any]


class EchoApp:
    """Answers JSON with the method, path, query, body and Authorization it got, and counts
    the connections (client ports) requests came on."""

    def __init__(self) -> None:
        self.clients: set[tuple[str, int]] = set()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.clients.add(tuple(scope["client"]))  # type: ignore[arg-type]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = dict(scope["headers"])
        status = 404 if scope["path"] == "/missing" else 200
        answer = json.dumps({
            "method": scope["method"], "path": scope["path"],
            "query": scope["query_string"].decode(), "body": json.loads(body or b"null"),
            "authorization": headers.get(b"authorization", b"").decode(),
        }).encode()  # fmt: skip
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": answer})


@contextlib.asynccontextmanager
async def serving(app: EchoApp) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", timeout_keep_alive=1, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_requests_and_answers_go_over_one_kept_alive_connection() -> None:
    app, http = EchoApp(), LeanHttp(timeout=10.0)
    async with serving(app) as url:
        first = await http.request(
            "POST", url, "/v1/things", json_body={"a": 1},
            headers="Authorization: Bearer t0k\r\n",
        )  # fmt: skip
        second = await http.request("GET", url, "/v1/slots", params={"from": "2026-01-02T03:04"})
        missing = await http.request("GET", url, "/missing")
        await http.close()
    assert first.status_code == 200
    assert first.json() == {"method": "POST", "path": "/v1/things", "query": "",
                            "body": {"a": 1}, "authorization": "Bearer t0k"}  # fmt: skip
    assert second.json()["query"] == "from=2026-01-02T03%3A04"
    assert missing.status_code == 404
    assert len(app.clients) == 1, "every request after the first reuses its connection"


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    app, http = EchoApp(), LeanHttp(timeout=10.0)
    async with serving(app) as url:
        assert (await http.request("GET", url, "/a")).status_code == 200
        await asyncio.sleep(2.0)  # past the server's keep-alive timeout: it closes the socket
        assert (await http.request("GET", url, "/b")).json()["path"] == "/b"
        await http.close()
    assert len(app.clients) == 2


async def test_an_unreachable_service_is_an_http_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there
    with pytest.raises(HttpError, match="ConnectionRefusedError"):
        await LeanHttp(timeout=5.0).request("GET", f"http://127.0.0.1:{port}", "/")
