"""The HTTP under every endpoint (the OpenAI SDK on its aiohttp transport), against real servers
on 127.0.0.1: a keep-alive server written on asyncio streams (it can drop its idle connections
and send any bytes), and the simulated server. What the SDK does is checked where the package
relies on it: connection reuse, compact UTF-8 bodies, server-sent events, an error event in a
stream, a reply that is not JSON, and pools closed with their loop. (Proxies from the
environment: ``test_clients.py``.)"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from langgraph_feedit.endpoints import Endpoint
from langgraph_feedit.errors import EndpointError

REPLY = {
    "id": "x",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def _json_reply(body: bytes, status: str = "200 OK", kind: str = "application/json") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


class RawServer:
    """HTTP/1.1 with keep-alive; ``reply(body)`` makes each answer's bytes."""

    def __init__(self, reply: Callable[[bytes], bytes] | None = None) -> None:
        self.reply = reply or (lambda body: _json_reply(json.dumps(REPLY).encode()))
        self.connections = 0
        self.bodies: list[bytes] = []
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
                body = await reader.readexactly(length)
                self.bodies.append(body)
                writer.write(self.reply(body))
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


async def _chat(endpoint: Endpoint, **kwargs: object) -> str:
    result = await endpoint.chat([{"role": "user", "content": "hi"}], model="m", **kwargs)  # type: ignore[arg-type]
    return result.texts[0]


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_a_connection_the_server_dropped_is_not_reused(transport: Any) -> None:
    server = RawServer()
    async with server as url:
        endpoint = Endpoint(url, api_key="sk-none", max_retries=0, transport=transport)
        try:
            assert await _chat(endpoint) == "ok"
            assert await _chat(endpoint) == "ok"
            assert server.connections == 1  # kept alive and reused
            await server.drop_idle()
            # No retries: had the pool reused the closed connection, this request would fail.
            assert await _chat(endpoint) == "ok"
            assert server.connections == 2
        finally:
            await endpoint.aclose()


async def test_bodies_go_out_as_compact_utf8_json() -> None:
    server = RawServer()
    async with server as url:
        endpoint = Endpoint(url, api_key="sk-none", max_retries=0)
        try:
            await endpoint.chat([{"role": "user", "content": "héllo ✓"}], model="m", seed=3)
        finally:
            await endpoint.aclose()
    sent = server.bodies[-1]
    assert "héllo ✓".encode() in sent and b'"seed":3' in sent
    assert json.loads(sent)["messages"] == [{"role": "user", "content": "héllo ✓"}]


def _sse(*events: str) -> Callable[[bytes], bytes]:
    stream = "".join(events).encode()
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunked = f"{len(stream):x}\r\n".encode() + stream + b"\r\n0\r\n\r\n"
    return lambda body: head + chunked


def _chunk(content: str | None = None, finish: str | None = None, usage: bool = False) -> str:
    event: dict[str, object] = {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }
    if usage:
        event = {
            "id": "c",
            "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2},
        }
    return f"data: {json.dumps(event)}\n\n"


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_streams_are_read_event_by_event(transport: Any) -> None:
    # Comments, ``event:`` fields and CRLF line ends are skipped; usage comes in its own event.
    server = RawServer(
        _sse(
            ": keep-alive\n\n",
            "event: message\r\n" + _chunk("Hel").replace("\n", "\r\n"),
            _chunk("lo", finish="stop"),
            _chunk(usage=True),
            "data: [DONE]\n\n",
        )
    )
    pieces: list[str] = []

    async def on_token(piece: str) -> None:
        pieces.append(piece)

    async with server as url:
        endpoint = Endpoint(url, api_key="sk-none", max_retries=0, transport=transport)
        try:
            result = await endpoint.chat(
                [{"role": "user", "content": "hi"}], model="m", on_token=on_token
            )
        finally:
            await endpoint.aclose()
    assert pieces == ["Hel", "lo"] and result.texts == ["Hello"]
    assert result.finish_reasons == ["stop"]
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (5, 2)
    assert json.loads(server.bodies[-1])["stream"] is True


async def test_an_error_event_in_a_stream_is_an_endpoint_error() -> None:
    server = RawServer(_sse(_chunk("Hel"), 'data: {"error": {"message": "the model crashed"}}\n\n'))

    async def on_token(piece: str) -> None:
        pass

    async with server as url:
        endpoint = Endpoint(url, api_key="sk-none", max_retries=0)
        try:
            with pytest.raises(EndpointError, match="stream reported an error") as info:
                await _chat(endpoint, on_token=on_token)
        finally:
            await endpoint.aclose()
    assert "the model crashed" in (info.value.body or "")


async def test_a_stream_that_ends_without_done_is_a_malformed_reply() -> None:
    # Its final chunk came, but only [DONE] says the stream is whole.
    server = RawServer(_sse(_chunk("Hel"), _chunk("lo", finish="stop")))

    async def on_token(piece: str) -> None:
        pass

    async with server as url:
        endpoint = Endpoint(url, api_key="sk-none", max_retries=1, backoff=0.01)
        try:
            with pytest.raises(EndpointError, match=r"malformed reply.*without \[DONE\]") as info:
                await _chat(endpoint, on_token=on_token)
        finally:
            await endpoint.aclose()
    assert info.value.retryable and len(server.bodies) == 2


async def test_a_reply_that_is_not_json_is_a_malformed_reply_and_is_retried() -> None:
    server = RawServer(lambda body: _json_reply(b"<html>gateway</html>", kind="text/html"))
    async with server as url:
        endpoint = Endpoint(url, api_key="sk-none", max_retries=1, backoff=0.01)
        try:
            with pytest.raises(EndpointError, match="malformed reply") as info:
                await _chat(endpoint)
        finally:
            await endpoint.aclose()
    assert info.value.retryable and len(server.bodies) == 2


@pytest.mark.slow
def test_sessions_close_when_their_loop_shuts_down(tmp_path: object) -> None:
    # A script that never closes its endpoints (asyncio.run per call, then a sync invoke on the
    # graph's own loop): no "Unclosed client session" or connector warning, even in dev mode,
    # and no loop left in the registry.
    script = textwrap.dedent(
        """
        import asyncio, gc, sys
        from langgraph_feedit import FeeditConfig, create_feedit_graph
        from langgraph_feedit import endpoints
        from langgraph_feedit.testing import SimServer

        with SimServer(seed=1) as sim:
            roles = {"default": {"base_url": sim.base_url, "model": "m"}}
            config = FeeditConfig.load(env={}, overrides={"roles": roles})
            graph = create_feedit_graph(config, preset="best-of-n").compile()
            for i in range(3):
                asyncio.run(graph.ainvoke({"messages": [("user", f"q{i}")]}))
            gc.collect()
            print("loops", len(endpoints._registry))
            graph.invoke({"messages": [("user", "sync")]})
            print("calls", sim.call_count)
        """
    )
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONASYNCIODEBUG": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loops 0" in done.stdout and "calls" in done.stdout
    assert "Unclosed" not in done.stderr and "ResourceWarning" not in done.stderr, done.stderr


async def test_a_silent_server_fails_within_the_first_byte_timeout_and_retries_aloud(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server that takes the connection and sends nothing: a streamed call gives up after
    its first-byte timeout, not its whole-reply timeout, says so, and each retry is a line on
    the package's logger (standard error by default)."""
    import logging
    import time

    from langgraph_feedit.errors import EndpointTimeout
    from langgraph_feedit.testing import Fault, SimServer

    pieces: list[str] = []

    async def on_token(piece: str) -> None:
        pieces.append(piece)

    with SimServer(seed=2, faults=[Fault("slow", rate=1.0, slow_s=20.0)]) as sim:
        endpoint = Endpoint(
            sim.base_url, timeout=30.0, first_byte_timeout=0.4, max_retries=1, backoff=0.01
        )
        started = time.monotonic()
        try:
            with (
                caplog.at_level(logging.WARNING, logger="langgraph_feedit"),
                pytest.raises(EndpointTimeout, match=r"no first token within 0\.4 s"),
            ):
                await endpoint.chat([{"role": "user", "content": "hi"}], on_token=on_token)
        finally:
            await endpoint.aclose()
    assert time.monotonic() - started < 5
    assert pieces == []
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 1 and "retry 1 of 1" in retries[0]
    assert sim.base_url in retries[0] and "no first token" in retries[0]
