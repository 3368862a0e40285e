"""The connection pool's cheaper liveness probe (``langgraph_feedit._http``).

A real HTTP/1.1 server on 127.0.0.1 (asyncio streams) answers each request with keep-alive and
can drop its idle connections, so the probe's answer decides whether the next request reuses a
dead connection.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio.abc._sockets as anyio_sockets
import pytest

from langgraph_feedit._http import _Backend
from langgraph_feedit.endpoints import Endpoint

REPLY = {
    "id": "x",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "ok"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


class KeepAliveServer:
    def __init__(self) -> None:
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode().split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                await reader.readexactly(length)
                body = json.dumps(REPLY).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def drop_idle(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()
        await asyncio.sleep(0.05)  # the FIN reaches the client's socket

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()


async def _chat(endpoint: Endpoint) -> str:
    result = await endpoint.chat([{"role": "user", "content": "hi"}], model="m")
    return result.texts[0]


async def test_a_connection_the_server_dropped_is_not_reused() -> None:
    server = KeepAliveServer()
    async with server as url:
        endpoint = Endpoint(url, api_key="sk-none", max_retries=0)
        try:
            assert await _chat(endpoint) == "ok"
            assert await _chat(endpoint) == "ok"
            assert server.connections == 1  # kept alive and reused
            await server.drop_idle()
            # No retries: had the probe missed the close, this request would fail.
            assert await _chat(endpoint) == "ok"
            assert server.connections == 2
        finally:
            await endpoint.aclose()


async def test_the_probe_does_not_build_anyios_attribute_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # anyio's table calls getpeername() and builds a dict of lambdas on every probe of every
    # idle connection, before and after every request: the cost this module removes.
    server = KeepAliveServer()
    async with server as url:
        endpoint = Endpoint(url, api_key="sk-none", max_retries=0)
        pool = getattr(getattr(endpoint.client._client, "_transport", None), "_pool", None)
        if not isinstance(getattr(pool, "_network_backend", None), _Backend):
            await endpoint.aclose()
            pytest.skip(
                "this openai client's pool is not httpcore2's (older openai releases use httpx): "
                "the probe is left as it is there"
            )
        try:
            # Eight connections opened (opening one may build the table once; that is not a probe).
            await asyncio.gather(*(_chat(endpoint) for _ in range(8)))
            opened = server.connections
            built: list[Any] = []
            original = anyio_sockets._SocketProvider.extra_attributes

            def counting(self: Any) -> Any:
                built.append(self)
                return original.fget(self)  # type: ignore[attr-defined]

            monkeypatch.setattr(
                anyio_sockets._SocketProvider, "extra_attributes", property(counting)
            )
            await asyncio.gather(*(_chat(endpoint) for _ in range(8)))
            assert await _chat(endpoint) == "ok"
            assert server.connections == opened  # every request went out on a pooled connection
            assert built == []
        finally:
            await endpoint.aclose()
