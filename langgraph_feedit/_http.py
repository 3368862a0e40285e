"""A cheaper liveness probe for the HTTP client's pooled connections.

Before and after every request, httpcore's connection pool asks each idle connection whether
the server has closed it (``get_extra_info("is_readable")``). Its anyio backend answers by
building anyio's whole table of socket attributes, ``getpeername()`` included, just to reach the
raw socket, then polls it. With a pool of 40 connections (the widest stage of an 8x2x2 tree)
that was the largest single cost of a call at zero latency (cProfile: about a fifth of the
graph's time). The wrapper here keeps each connection's raw socket from when it was opened and
polls it directly: the same answer, without the table. Everything else is passed through
(the ``timeout`` parameters are httpcore's interface, hence the ASYNC109 exemptions).
"""

from __future__ import annotations

import select
import ssl
import sys
from collections.abc import Iterable
from typing import Any

import httpcore2
import httpx2

__all__ = ["cheap_liveness_probes"]


def _readable(sock: Any) -> bool:
    # As httpcore's own check: a closed or detached socket counts as readable (the next read
    # returns b"", so the pool drops the connection).
    fd: int = sock.fileno()
    if fd < 0:
        return True
    if sys.platform == "win32" or getattr(select, "poll", None) is None:  # pragma: no cover
        ready, _, _ = select.select([fd], [], [], 0)
        return bool(ready)
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(0))


class _Stream(httpcore2.AsyncNetworkStream):
    def __init__(self, inner: httpcore2.AsyncNetworkStream) -> None:
        self._inner = inner
        # asyncio hands out a ``TransportSocket`` (a view of the socket), not a socket.socket.
        sock = inner.get_extra_info("socket")
        self._sock: Any = sock if callable(getattr(sock, "fileno", None)) else None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore2.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._sock is not None:
            return _readable(self._sock)
        return self._inner.get_extra_info(info)


class _Backend(httpcore2.AsyncNetworkBackend):
    def __init__(self, inner: httpcore2.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        return _Stream(
            await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def cheap_liveness_probes(client: httpx2.AsyncClient) -> None:
    """Give ``client``'s direct (unproxied) connection pool the cheaper probe.

    The pool is reached through httpx's and httpcore's private attributes; where they are not
    as expected (a proxy, another transport, another version), the client is left as it is.
    """
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    if type(pool) is not httpcore2.AsyncConnectionPool:
        return
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore2.AsyncNetworkBackend) and not isinstance(backend, _Backend):
        pool._network_backend = _Backend(backend)
