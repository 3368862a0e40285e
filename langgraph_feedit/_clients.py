"""The clients an endpoint calls through: the SDK's ``AsyncOpenAI`` made from a role's
settings (or the operator's own, checked), its HTTP pool, the concurrency limit every run in the
process shares, and the hook that closes a loop's clients as it shuts down."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

import httpx2
import openai
from openai import AsyncOpenAI, AsyncStream

from langgraph_feedit.config import NO_KEY, RoleConfig
from langgraph_feedit.errors import ConfigError, register_secret

ClientSource = AsyncOpenAI | Callable[[], AsyncOpenAI]
"""A client the operator hands in for a role: an ``AsyncOpenAI`` (or ``AsyncAzureOpenAI``) used
as given, or a zero-argument factory of one, called once per event loop (a client's connection
pool belongs to the loop it first ran on; a factory is what a graph run from sync code, one
loop per call, needs)."""

Transport = Literal["aiohttp", "httpx"]


# -- clients ----------------------------------------------------------------------------------


def _http_client(
    transport: Transport, *, verify: bool | None, ca_file: str | None
) -> httpx2.AsyncClient:
    """The SDK's HTTP client on ``transport``, its pool unbounded (the endpoint's limiter
    decides how many requests are open); proxies and CA bundles from the environment are read
    as the SDK reads them (``trust_env``)."""
    tls: ssl.SSLContext | bool = True if verify is None else verify
    if ca_file is not None:
        tls = ssl.create_default_context(cafile=ca_file)
    limits = httpx2.Limits(max_connections=100_000, max_keepalive_connections=None)
    if transport == "aiohttp":
        return openai.DefaultAioHttpClient(verify=tls, limits=limits)
    return openai.DefaultAsyncHttpxClient(verify=tls, limits=limits)


def make_client(
    base_url: str,
    *,
    api_key: str = NO_KEY,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    api_version: str | None = None,
    azure_deployment: str | None = None,
    verify: bool | None = None,
    ca_file: str | None = None,
    transport: Transport = "aiohttp",
) -> AsyncOpenAI:
    """An ``AsyncOpenAI`` for ``base_url`` (an ``AsyncAzureOpenAI`` with ``api_version``: the
    key then goes in the ``api-key`` header, ``api-version`` in the query, and a call for model
    M to ``/openai/deployments/M/...`` unless ``azure_deployment`` names the deployment), with
    the SDK's retries off: the endpoint retries."""
    http = _http_client(transport, verify=verify, ca_file=ca_file)
    # The SDK's telemetry headers (platform, runtime, package) are left out: no
    # OpenAI-compatible server reads them, and each header is work for httpx on every request.
    headers = {**_NO_TELEMETRY, **(headers or {})}
    if api_version is not None:
        return openai.AsyncAzureOpenAI(
            azure_endpoint=base_url,
            azure_deployment=azure_deployment,
            api_version=api_version,
            api_key=api_key,
            max_retries=0,
            default_headers=headers,
            default_query=query,
            http_client=http,
        )
    return AsyncOpenAI(
        base_url=base_url,
        api_key=api_key,
        max_retries=0,
        default_headers=headers,
        default_query=query,
        http_client=http,
    )


_NO_TELEMETRY: dict[str, Any] = {
    name: openai.Omit()
    for name in (
        "X-Stainless-Lang",
        "X-Stainless-Package-Version",
        "X-Stainless-OS",
        "X-Stainless-Arch",
        "X-Stainless-Runtime",
        "X-Stainless-Runtime-Version",
        "X-Stainless-Async",
    )
}
# And the two it adds per request, where the endpoint owns its client.
_NO_REQUEST_TELEMETRY: dict[str, Any] = {
    "x-stainless-retry-count": openai.Omit(),
    "x-stainless-read-timeout": openai.Omit(),
}


class _Events(AsyncStream[object]):
    """A streamed reply's events as parsed JSON, noting whether ``[DONE]`` came (the SDK's
    stream ends quietly without it; only a finished stream says its answer is whole)."""

    done = False

    async def _iter_events(self) -> AsyncIterator[Any]:
        async for sse in super()._iter_events():
            if sse.data.startswith("[DONE]"):
                self.done = True
            yield sse


class _Limiter:
    """A concurrency limit whose size can shrink when another role asks for less.

    Waiters are served first come, first served. A free slot is taken without a wait (and
    without a lock: nothing else runs on the loop between the check and the count); a slot
    given back goes straight to the longest waiter, whose count is taken for it.
    """

    __slots__ = ("_waiters", "active", "limit", "peak")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self.peak = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        if self.active < self.limit and not self._waiters:
            self._take()
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot was handed over just as the caller left
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _take(self) -> None:
        self.active += 1
        if self.active > self.peak:
            self.peak = self.active

    def _release(self) -> None:
        self.active -= 1
        while self._waiters and self.active < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a waiter cancelled while queued is passed over
                self._take()
                waiter.set_result(None)


_CLIENT_FIELDS = (
    "headers",
    "header_env",
    "query",
    "api_version",
    "azure_deployment",
    "connect_timeout",
    "verify",
    "ca_file",
    "http_client",
)
"""The role settings that make its client: roles that differ in any of them get clients of
their own."""


def client_base_url(source: ClientSource) -> str:
    """The base URL of a client the operator handed in (a factory's, by making one)."""
    client = source if isinstance(source, AsyncOpenAI) else source()
    if not isinstance(client, AsyncOpenAI):
        raise ConfigError(
            f"a client factory must return an openai.AsyncOpenAI, not {type(client).__name__}"
        )
    return str(client.base_url).rstrip("/")


def role_clients(
    clients: Mapping[str, ClientSource] | None, roles: Sequence[str]
) -> dict[str, ClientSource]:
    """Each role's client from ``clients`` (role name to client; ``default`` for every role not
    named), checked: an ``AsyncOpenAI`` (``AsyncAzureOpenAI`` is one) or a factory of one.

    Raises:
        ConfigError: a key is no role, or a value no client.
    """
    if not clients:
        return {}
    unknown = sorted(set(clients) - {"default", *roles})
    if unknown:
        raise ConfigError(
            f"clients: {', '.join(map(repr, unknown))} is no role (roles: default, "
            f"{', '.join(roles)})",
            key="clients",
            source="arguments",
        )
    for name, source in clients.items():
        if not isinstance(source, AsyncOpenAI) and not callable(source):
            raise ConfigError(
                f"clients[{name!r}] must be an openai.AsyncOpenAI (or AsyncAzureOpenAI), or a "
                f"function that returns one, not {type(source).__name__}",
                key=f"clients.{name}",
                source="arguments",
            )
    default = clients.get("default")
    out = {r: clients[r] for r in roles if r in clients}
    if default is not None:
        out = {r: out.get(r, default) for r in roles}
    return out


def _client_for(config: RoleConfig, role: str, url: str) -> AsyncOpenAI:
    """The client a role's settings describe; its key and header values from the environment."""
    headers = dict(config.headers or {})
    for header, variable in (config.header_env or {}).items():
        value = os.environ.get(variable)
        if not value:
            raise ConfigError(
                f"roles.{role}.header_env names the environment variable {variable!r} for the "
                f"{header!r} header, which is not set",
                key=f"roles.{role}.header_env",
                source="environment",
            )
        register_secret(value)
        headers[header] = value
    return make_client(
        url,
        api_key=config.api_key(role),
        headers=headers or None,
        query=config.query,
        api_version=config.api_version,
        azure_deployment=config.azure_deployment,
        verify=config.verify,
        ca_file=config.ca_file,
        transport=config.http_client or "aiohttp",
    )


def at_loop_shutdown(close: Callable[[], Awaitable[None]]) -> AsyncGenerator[None, None]:
    """Await ``close()`` when the running loop shuts down (``asyncio.run`` and
    ``asyncio.Runner`` call ``loop.shutdown_asyncgens()`` before they close the loop).

    A client's pool left open when its loop closes logs "Unclosed client session" once it is
    collected. The one shutdown hook a loop offers a library is that it closes every async
    generator still suspended, so each loop's endpoints get one: suspended at its ``yield``,
    its ``finally`` runs in the loop's last turns. The loop holds its async generators weakly:
    the caller keeps the returned generator (collected early, it runs ``close`` then).
    """

    async def closer() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await close()

    agen = closer()
    first = agen.__anext__()  # the running loop's first-iteration hook registers it here
    with contextlib.suppress(StopIteration):  # raised once it is suspended at its yield
        first.send(None)
    return agen
