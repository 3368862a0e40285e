"""OpenAI-compatible endpoints: one client per endpoint, one retry policy, shared limits.

This module knows the OpenAI-compatible protocol and nothing about trees. An :class:`Endpoint`
wraps one ``openai.AsyncOpenAI`` client (or ``AsyncAzureOpenAI``: built from a role's settings by
:func:`make_client`, or the operator's own, handed in), tenacity as its one retry policy (the
SDK's own retries are off on every request, whoever made the client), and a concurrency limiter
that every run in the process shares. Calls:

- :meth:`Endpoint.chat` samples ``n`` completions of a conversation. It asks for ``n > 1`` in one
  request only where the role allows it, checks how many choices came back (llama.cpp answers
  ``n=2`` with one choice and no error) and makes up the rest with parallel single calls.
  It can ask for the first tokens' ``top_logprobs`` (a principle judge reads them) and for
  output constrained by a JSON schema (``response_format``), falling back to plain text on a
  server that refuses it and remembering that per endpoint.
- :meth:`Endpoint.reward` scores a conversation with vLLM's pooling API (reward models).

Requests go out through the SDK's generic ``post``, with the reply read as plain JSON: the
package reads a few fields of each reply (and fields no SDK type declares: ``reasoning_content``,
vLLM's pooling data), so the typed models would only be built to be taken apart again
(``bench/clients.py``). The SDK's failures are mapped into the package's errors in one place
(:func:`failure_of`). Failures become :class:`~langgraph_feedit.errors.EndpointError` naming the
endpoint, the status and the body, never the key. Cancelling the calling task closes the HTTP
request, so the server sees a disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import ssl
import threading
import weakref
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import httpx2
import openai
from openai import AsyncOpenAI, AsyncStream
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from langgraph_feedit.chatapi import (
    DEFAULT_THINK_TAGS,
    ChatRequest,
    ChatResult,
    Choices,
    IncompleteReply,
    JsonMode,
    TokenLogprobs,
    pooled_reward,
    read_choices,
    read_stream,
    refuses_response_format,
    why_no_answer,
)
from langgraph_feedit.config import NO_KEY, RoleConfig
from langgraph_feedit.defaults import BACKOFF_S, CALL_TIMEOUT_S, MAX_CONCURRENCY, MAX_RETRIES
from langgraph_feedit.errors import (
    ConfigError,
    EndpointError,
    EndpointTimeout,
    redact,
    register_secret,
)
from langgraph_feedit.usage import Usage

# The package's logger itself: its redacting filter sees only records logged on it (errors.py).
_log = logging.getLogger("langgraph_feedit")

if TYPE_CHECKING:
    from langgraph_feedit.embedded import EmbeddedServer

__all__ = [
    "ChatResult",
    "ClientSource",
    "Endpoint",
    "Failure",
    "TokenLogprobs",
    "aclose_endpoints",
    "calls_in_flight",
    "failure_of",
    "get_endpoint",
    "is_retryable",
    "make_client",
    "role_clients",
]

RETRYABLE_STATUS = frozenset({408, 409, 429})
_MAX_RETRY_AFTER = 60.0
_BACKOFF_MAX = 30.0
_MAX_ERROR_BODY = 4000

ClientSource = AsyncOpenAI | Callable[[], AsyncOpenAI]
"""A client the operator hands in for a role: an ``AsyncOpenAI`` (or ``AsyncAzureOpenAI``) used
as given, or a zero-argument factory of one, called once per event loop (a client's connection
pool belongs to the loop it first ran on; a factory is what a graph run from sync code, one
loop per call, needs)."""

Transport = Literal["aiohttp", "httpx"]


# -- the SDK's failures, in the package's terms --------------------------------------------------

FailureKind = Literal["status", "timeout", "connection", "malformed"]


@dataclasses.dataclass(slots=True)
class Failure:
    """One failed request, whichever way the SDK (or the reply) said so: ``kind``, and for
    ``"status"`` failures the status (``None``: an error event in a stream), the body and the
    seconds the server asked us to wait (``Retry-After`` or ``retry-after-ms``)."""

    kind: FailureKind
    message: str
    status: int | None = None
    body: str | None = None
    retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        """Connection errors, timeouts, malformed replies, 408/409/429, 5xx and stream errors."""
        if self.kind != "status":
            return True
        return self.status is None or self.status in RETRYABLE_STATUS or self.status >= 500


class MalformedReply(Exception):
    """A 2xx reply the package cannot read: not JSON, or a stream cut short of ``[DONE]``."""


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _root(exc: BaseException) -> str:
    root = _chain(exc)[-1]
    return str(root) or type(root).__name__


def _disconnected(exc: BaseException) -> bool:
    """Whether an SDK timeout is really a connection the server closed: the SDK's aiohttp
    transport maps every aiohttp connection error, a peer that hung up among them, to a
    connect timeout."""
    import aiohttp

    return any(
        isinstance(e, aiohttp.ClientConnectionError) and not isinstance(e, TimeoutError)
        for e in _chain(exc)
    )


def failure_of(exc: BaseException) -> Failure | None:
    """The :class:`Failure` an exception of a request stands for, ``None`` for any other
    exception (a bug, a cancellation: never retried). The one place that knows the SDK's
    exception types."""
    if isinstance(exc, openai.APIStatusError):
        response = exc.response
        return Failure(
            "status",
            f"HTTP {exc.status_code}",
            status=exc.status_code,
            body=_response_text(response),
            retry_after=_retry_after_header(response.headers),
        )
    if isinstance(exc, openai.APITimeoutError):
        if _disconnected(exc):
            return Failure("connection", _root(exc))
        return Failure("timeout", "no reply in time")
    if isinstance(exc, openai.APIConnectionError):
        return Failure("connection", _root(exc))
    if isinstance(exc, openai.APIError):
        # An error event in a stream that had begun with a 200.
        body = exc.body if isinstance(exc.body, str) else json.dumps(exc.body, default=str)
        return Failure("status", "the stream reported an error", body=body)
    if isinstance(exc, FirstByteTimeout):
        return Failure("timeout", str(exc))
    if isinstance(exc, TimeoutError):
        return Failure("timeout", "no reply in time")
    if isinstance(exc, MalformedReply | json.JSONDecodeError):
        return Failure("malformed", str(exc))
    return None


class FirstByteTimeout(TimeoutError):
    """A streamed request that had no first chunk within its first-byte timeout."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"no first token within {seconds:g} s")


def _response_text(response: Any) -> str | None:
    try:
        return str(response.text)[:_MAX_ERROR_BODY]
    except Exception:  # a streamed body not read: the status says enough
        return None


def _retry_after_header(headers: Any) -> float | None:
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000.0
        if "retry-after" in headers:
            return float(headers["retry-after"])
    except ValueError:
        return None  # an HTTP date: the caller's own backoff applies
    return None


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


def _redact_cause(exc: BaseException) -> None:
    """Redact, in place, an SDK exception that stays chained under the package's error: its
    message quotes the reply's body, which may echo the key it was sent."""
    exc.args = tuple(_redacted(a) for a in exc.args)
    for name in ("message", "body"):
        if isinstance(exc, openai.APIError) and hasattr(exc, name):
            setattr(exc, name, _redacted(getattr(exc, name)))


def _retry_after(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (``Retry-After`` or ``retry-after-ms``), capped."""
    failure = failure_of(exc) if exc is not None else None
    if failure is None or failure.retry_after is None:
        return None
    return min(max(failure.retry_after, 0.0), _MAX_RETRY_AFTER)


def is_retryable(exc: BaseException) -> bool:
    """Whether a failure is transient: connection errors, timeouts, malformed replies (a
    broken stream, an empty reply among them), 408/409/429 and 5xx. A 400 (bad request) or
    401/403/404 is never retried, nor a reply that ran out of tokens while thinking."""
    if isinstance(exc, EndpointError | IncompleteReply):
        return exc.retryable
    failure = failure_of(exc)
    return failure is not None and failure.retryable


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


class Endpoint:
    """One OpenAI-compatible server: a shared client, a shared limit, one retry policy.

    Get one with :func:`get_endpoint` so that every graph in the process (on the same event
    loop) shares it, and with it the concurrency limit.

    Requests beyond ``max_concurrency`` wait in this process's queue, and a request's timeout
    starts only when it leaves that queue, so waiting one's turn never counts against it. With
    ``min_tokens_per_second`` set, each chat request may take ``timeout`` plus its
    ``max_tokens`` (times ``n``) at that rate: a local server decodes at a known, slow pace,
    and a fixed timeout would cut long answers short. ``retry_timeouts=False`` surfaces a
    timeout at once instead of retrying it: a local server goes on decoding a request whose
    client has gone, so a retry would only queue behind the abandoned work.

    ``client``: an ``AsyncOpenAI`` to call through (else one is made for ``base_url`` and
    ``api_key`` on ``transport``); it is closed by :meth:`aclose` only when made here or
    ``own_client`` says it is this endpoint's.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str = NO_KEY,
        client: AsyncOpenAI | None = None,
        own_client: bool = False,
        transport: Transport = "aiohttp",
        connect_timeout: float | None = None,
        max_concurrency: int = MAX_CONCURRENCY,
        timeout: float = CALL_TIMEOUT_S,
        first_byte_timeout: float | None = None,
        max_retries: int = MAX_RETRIES,
        backoff: float = BACKOFF_S,
        min_tokens_per_second: float | None = None,
        retry_timeouts: bool = True,
    ) -> None:
        if min_tokens_per_second is not None and min_tokens_per_second <= 0:
            raise ValueError(f"min_tokens_per_second must be positive, got {min_tokens_per_second}")
        if client is None and not base_url:
            raise ValueError("an Endpoint needs a base_url or a client")
        self.base_url = (base_url or str(client.base_url if client else "")).rstrip("/")
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout
        self.first_byte_timeout = first_byte_timeout
        self.min_tokens_per_second = min_tokens_per_second
        self.retry_timeouts = retry_timeouts
        self.limiter = _Limiter(max_concurrency)
        self.connect_timeout = connect_timeout
        self.owns_client = client is None or own_client
        """Whether :meth:`aclose` closes the client: never one the operator handed in."""
        if client is None:
            if api_key != NO_KEY:
                register_secret(api_key)  # for endpoints made with a key directly
            client = make_client(self.base_url, api_key=api_key, transport=transport)
        self.client = client
        self._closer: AsyncGenerator[None, None] | None = None
        root = str(client.base_url).rstrip("/")
        # vLLM's pooling API sits at the server's root, beside ``/v1``.
        self._pooling_url = f"{root.removesuffix('/v1')}/pooling"
        # A path the SDK joins to its base URL on every request, or, for a client made here
        # (not Azure's, which rewrites the path), the whole URL: a tenth less CPU per call.
        self._chat_path = "/chat/completions"
        if self.owns_client and not isinstance(client, openai.AsyncAzureOpenAI):
            self._chat_path = f"{root}/chat/completions"
        self.n_supported: bool | None = None
        """Whether the server honours ``n > 1``: unknown until tried."""
        self.json_modes: list[JsonMode] = ["json_schema", "json_object"]
        """The ``response_format`` forms still worth trying here, best first; a form the
        server refuses is dropped, so it is asked once per endpoint, not once per call."""
        self.json_mode_known = False
        """Whether a call has found which form (if any) this server takes."""
        self.logprobs_supported: bool | None = None
        """Whether the server returns ``logprobs`` when asked: unknown until tried (or until
        :meth:`discover_logprobs` has asked)."""
        self._logprobs_probe: asyncio.Task[None] | None = None
        self.yes_no_unanswered = False
        """Whether a principle question here got a first token that was no Yes or No (a
        reasoning model that thinks first): its candidates are rated instead from then on."""
        self._default_model: str | None = None

    def __repr__(self) -> str:
        return f"Endpoint({self.base_url!r}, limit={self.limiter.limit})"

    def _options(self, seconds: float) -> Any:
        """Per-request options: the SDK's retries off (this endpoint retries, whoever made the
        client), and the request's timeout."""
        timeout: float | httpx2.Timeout = seconds
        if self.connect_timeout is not None:
            timeout = httpx2.Timeout(seconds, connect=self.connect_timeout)
        if self.owns_client:
            return {"max_retries": 0, "timeout": timeout, "headers": _NO_REQUEST_TELEMETRY}
        return {"max_retries": 0, "timeout": timeout}

    async def _request(self, method: str, path: str, body: Any, seconds: float) -> Any:
        """One request's reply as parsed JSON. ``seconds`` bounds each wait (to connect, and
        for each read of the reply), as the SDK's timeouts do."""
        options = self._options(seconds)
        if method == "GET":
            response = await self.client.get(path, cast_to=httpx2.Response, options=options)
        else:
            response = await self.client.post(
                path, body=body, cast_to=httpx2.Response, options=options
            )
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise MalformedReply(f"the reply is not JSON ({exc})") from None

    async def _events(self, body: Any, seconds: float) -> AsyncIterator[dict[str, Any]]:
        """A streamed reply's events, each a JSON object, up to ``[DONE]`` (a stream that ends
        without it fails as malformed). ``seconds`` bounds the wait for the reply and each gap
        between events, not the whole stream (a long answer may take longer than any one gap)."""
        stream: _Events | None = None
        try:
            # A server that takes the connection and never answers fails here, within the
            # first-byte timeout, not after the whole-reply timeout and its retries.
            async with asyncio.timeout(self.first_byte_timeout) as waiting:
                stream = await self.client.post(
                    self._chat_path,
                    body=body,
                    cast_to=object,
                    stream=True,
                    stream_cls=_Events,
                    options=self._options(seconds),
                )
                events = stream.__aiter__()
                first = await anext(events, None)
        except TimeoutError:
            if stream is not None:
                await stream.close()
            if waiting.expired() and self.first_byte_timeout is not None:
                raise FirstByteTimeout(self.first_byte_timeout) from None
            raise
        try:
            if first is not None:
                if not isinstance(first, dict):
                    raise MalformedReply("a streamed event is not a JSON object")
                yield first
            async for event in events:
                if not isinstance(event, dict):
                    raise MalformedReply("a streamed event is not a JSON object")
                yield event
            if not stream.done:
                # The connection closed before ``[DONE]``: what came may be a whole answer or
                # half of one, and only a finished stream says which.
                raise MalformedReply("the stream ended without [DONE]")
        finally:
            await stream.close()

    def label(self, model: str | None) -> str:
        return f"{self.base_url} (model {model})" if model else self.base_url

    def request_timeout(self, max_tokens: int | None, n: int = 1) -> float:
        """Seconds one chat request may take once it has left the queue.

        ``timeout``, plus (with ``min_tokens_per_second``) the time to decode ``n * max_tokens``
        tokens at that rate.
        """
        if self.min_tokens_per_second is None or not max_tokens:
            return self.timeout
        return self.timeout + n * max_tokens / self.min_tokens_per_second

    # -- calls -----------------------------------------------------------------------------

    async def default_model(self) -> str:
        """The first model the server lists; used when a role names none."""
        if self._default_model is None:
            page = await self._call(
                lambda: self._request("GET", "/models", None, self.timeout),
                model=None,
                role=None,
            )
            try:
                models = [str(m["id"]) for m in page["data"]]
            except (KeyError, TypeError) as exc:
                raise EndpointError(
                    f"unexpected model list shape ({exc!r})", endpoint=self.base_url, status=200
                ) from None
            if not models:
                raise EndpointError("the server lists no models", endpoint=self.base_url)
            self._default_model = models[0]
        return self._default_model

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        n: int = 1,
        use_n: bool = False,
        role: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        on_token: Callable[[str], Awaitable[None]] | None = None,
        top_logprobs: int | None = None,
        json_schema: Mapping[str, Any] | None = None,
        on_reasoning: Callable[[str], Awaitable[None]] | None = None,
        think_tags: tuple[str, str] = DEFAULT_THINK_TAGS,
        answer_required: bool = True,
    ) -> ChatResult:
        """Sample ``n`` completions of ``messages``.

        With ``use_n`` one request asks for ``n`` choices; missing choices (a server that
        ignores ``n``) and servers that reject ``n > 1`` fall back to parallel single calls.
        Single call ``i`` of a fallback uses ``seed + i`` so seeded samples still differ.
        With ``on_token`` (one sample only) the reply is streamed and each piece of text is
        handed to ``on_token`` as it arrives; the result is the same as without.

        ``top_logprobs`` asks for ``logprobs`` and that many alternatives per token; the
        result's ``logprobs`` holds each choice's first token. ``json_schema``
        (``{"name": ..., "schema": {...}}``) asks for output constrained by the schema, in the
        first ``response_format`` form this endpoint has not refused; a refusal (an error
        that names ``response_format``) is not retried, the next form is tried, and with none
        left the call is made without one (the result's ``json_mode`` says what was used).

        Each reply is split into thinking and answer (``think_tags`` mark a thinking block in
        ``content``; see :func:`~langgraph_feedit.chatapi.split_reply`): the result's
        ``texts`` hold answers only, ``reasonings`` the thinking, and a stream hands thinking
        to ``on_reasoning``. A reply without an answer (empty, a stream cut short, thinking
        cut off by ``max_tokens``) fails the call, retried where asking again may help,
        unless ``answer_required`` is false (the result's ``incomplete`` then says why).

        Raises:
            EndpointError: the call failed after retries, or with a non-retryable error.
        """
        model = model or await self.default_model()
        params: dict[str, Any] = {
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
            "stop": list(stop) if stop else None,
        }
        params = {k: v for k, v in params.items() if v is not None}
        if top_logprobs is not None:
            params.update(logprobs=True, top_logprobs=top_logprobs)
        request = ChatRequest(
            messages,
            model,
            role,
            n,
            use_n,
            seed,
            params,
            extra_body,
            on_token,
            on_reasoning,
            think_tags,
            answer_required,
        )
        if json_schema is None:
            return await self._chat(request)
        # No call waits for another to find the form: each asks in the best form not yet
        # refused. A refusal comes back at once (before any decoding), so a first wave on a
        # server that refuses costs a quick 4xx per call and form, never a round of latency.
        result = await self._json_ladder(request, json_schema)
        self.json_mode_known = True
        return result

    async def _json_ladder(
        self, request: ChatRequest, json_schema: Mapping[str, Any]
    ) -> ChatResult:
        """The call with the first ``response_format`` form not refused here, down to none."""
        while self.json_modes:
            mode = self.json_modes[0]
            try:
                result = await self._chat(request.formatted(mode, json_schema))
            except EndpointError as exc:
                if not refuses_response_format(exc.status, exc.body):
                    raise
                if mode in self.json_modes:
                    self.json_modes.remove(mode)
                continue
            return dataclasses.replace(result, json_mode=mode)
        return await self._chat(request)

    async def _chat(self, request: ChatRequest) -> ChatResult:
        if request.on_token is not None and request.n == 1:
            on_token = request.on_token
            body = request.body(seed=request.seed, stream=True)
            seconds = self.request_timeout(request.max_tokens)

            async def stream() -> ChatResult:
                result = await read_stream(
                    self._events(body, seconds),
                    request.model,
                    on_token,
                    on_reasoning=request.on_reasoning,
                    tags=request.think_tags,
                )
                _answered(result.incomplete, request)
                return result

            streamed: ChatResult = await self._call(
                stream,
                model=request.model,
                role=request.role,
                seconds=seconds,
                refuse=request.asks_json,
            )
            return self._noted(streamed, request)
        n, seed = request.n, request.seed
        got = Choices()
        if n > 1 and request.use_n and self.n_supported is not False:
            try:
                together = await self._complete(request, n=n, seed=seed)
            except EndpointError as exc:
                if exc.status != 400 or "n" not in (exc.body or "").lower():
                    raise
                self.n_supported = False
            else:
                self.n_supported = len(together.texts) >= n
                got.extend(together, n)
        # A server that ignored ``n`` or refused it: the rest as single calls, sample ``i``
        # seeded ``seed + i`` so seeded samples still differ.
        calls = [
            self._complete(request, n=1, seed=None if seed is None else seed + i)
            for i in range(len(got.texts), n)
        ]
        # One call is awaited as it is: gather would give it a task of its own.
        singles = [await calls[0]] if len(calls) == 1 else await asyncio.gather(*calls)
        for single in singles:
            got.extend(single, 1)
        result = ChatResult(
            texts=got.texts,
            usage=got.usage,
            model=request.model,
            finish_reasons=got.reasons,
            logprobs=got.logprobs,
            reasonings=got.reasonings,
            incomplete=got.incomplete,
        )
        return self._noted(result, request)

    def _noted(self, result: ChatResult, request: ChatRequest) -> ChatResult:
        """Remember whether the server sent the logprobs it was asked for."""
        if request.asks_logprobs:
            self.logprobs_supported = any(lp is not None for lp in result.logprobs)
        return result

    async def _complete(self, request: ChatRequest, *, n: int, seed: int | None) -> Choices:
        """One ``POST /chat/completions`` for ``n`` choices; its choices."""
        body = request.body(n=n, seed=seed)
        seconds = self.request_timeout(request.max_tokens, n)

        async def complete() -> Choices:
            # Read inside the retried call: a reply that is no answer is asked again.
            reply = await self._request("POST", self._chat_path, body, seconds)
            choices = read_choices(reply, request.think_tags)
            if choices is None:
                raise EndpointError(
                    "the reply has no choices",
                    endpoint=self.label(request.model),
                    role=request.role,
                    status=200,
                    body=json.dumps(reply)[:500],
                )
            _answered(choices.incomplete, request)
            return choices

        result: Choices = await self._call(
            complete,
            model=request.model,
            role=request.role,
            seconds=seconds,
            refuse=request.asks_json,
        )
        return result

    async def reward(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        role: str | None = "judge",
    ) -> tuple[float, Usage]:
        """Score a conversation whose last turn is the candidate, with vLLM's pooling API.

        Sends ``POST /pooling`` (at the server root, beside ``/v1``) with ``{"model",
        "messages"}``; the reward is read by :func:`~langgraph_feedit.chatapi.pooled_reward`.
        """
        model = model or await self.default_model()
        body = {"model": model, "messages": [dict(m) for m in messages]}
        reply = await self._call(
            lambda: self._request("POST", self._pooling_url, body, self.timeout),
            model=model,
            role=role,
        )
        try:
            return pooled_reward(reply)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise EndpointError(
                f"unexpected pooling reply shape ({exc!r})",
                endpoint=self.label(model),
                role=role,
                status=200,
                body=json.dumps(reply)[:500] if not isinstance(reply, str) else reply,
            ) from None

    # -- what the server supports ---------------------------------------------------------

    def discover_logprobs(self, model: str | None) -> None:
        """Start, once per endpoint, a one-token request that asks for ``logprobs``, so that
        :attr:`logprobs_supported` is known by the time a principle judge needs it.

        Made when a run starts, it runs while the drafts are written: a judge that finds
        support unknown would otherwise ask its principle questions, see no logprobs come
        back, and only then ask for the rating, a whole extra round. A probe that fails
        leaves support unknown (the judge's own calls then find out) and is made again by
        the next run.
        """
        if self.logprobs_supported is not None:
            return
        if self._logprobs_probe is None or self._logprobs_probe.done():
            # Held here, not by a run: every run on this endpoint waits on the same one.
            self._logprobs_probe = asyncio.create_task(self._probe_logprobs(model))

    async def logprobs_known(self) -> bool | None:
        """:attr:`logprobs_supported`, after a probe in flight (:meth:`discover_logprobs`)
        has answered; a caller that is cancelled leaves the probe to the others."""
        probe = self._logprobs_probe
        if self.logprobs_supported is None and probe is not None and not probe.done():
            await asyncio.shield(probe)
        return self.logprobs_supported

    async def _probe_logprobs(self, model: str | None) -> None:
        """One attempt, never retried: a failure costs the judge nothing it would not have
        spent without a probe."""
        if self._closer is None and self.owns_client:
            self._closer = at_loop_shutdown(self.aclose)
        try:
            body = {
                "model": model or await self.default_model(),
                "messages": [{"role": "user", "content": "Answer Yes or No: is 2 > 1?"}],
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": True,
                "top_logprobs": 1,
            }
            async with self.limiter:
                reply = await self._request("POST", self._chat_path, body, self.timeout)
        except Exception as exc:
            if failure_of(exc) is None and not isinstance(exc, EndpointError):
                raise
            _log.debug("feedit: the logprobs probe of %s failed: %s", self.base_url, exc)
            return
        choices = read_choices(reply)
        if choices is not None and self.logprobs_supported is None:
            self.logprobs_supported = any(lp is not None for lp in choices.logprobs)

    # -- the one retry policy --------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        # Tenacity counts from the second attempt (the first is made before it; see _call).
        exc = state.outcome.exception() if state.outcome else None
        return self._backoff(exc, state.attempt_number + 1)

    def _say_retry(
        self,
        exc: BaseException | None,
        failed: int,
        pause: float,
        model: str | None,
        role: str | None,
    ) -> None:
        """One line on the package's logger (standard error, unless the application
        configures logging) for each retry: a slow or failing backend is never silent."""
        failure = failure_of(exc) if exc is not None else None
        why = failure.message if failure is not None else type(exc).__name__
        if failure is not None and failure.kind == "status" and failure.status is not None:
            why = f"HTTP {failure.status}"
        _log.warning(
            "feedit: %s call to %s failed (%s); retry %d of %d in %.1f s",
            role or "a",
            self.label(model),
            why,
            failed,
            self.max_retries,
            pause,
        )

    def _backoff(self, exc: BaseException | None, failed: int) -> float:
        """Seconds to wait after the ``failed``-th attempt failed with ``exc``."""
        asked = _retry_after(exc)
        if asked is not None:
            return asked + random.uniform(0, 0.1 * asked + 0.01)
        exp = min(self.backoff * 2.0 ** (failed - 1), _BACKOFF_MAX)
        return exp + random.uniform(0, exp)

    def _retryable(self, exc: BaseException) -> bool:
        if not self.retry_timeouts and (f := failure_of(exc)) and f.kind == "timeout":
            return False
        return is_retryable(exc)

    async def _call(
        self,
        make: Any,
        *,
        model: str | None,
        role: str | None,
        seconds: float | None = None,
        refuse: bool = False,
    ) -> Any:
        """Run one request under the limiter, retrying transient failures with tenacity.

        ``make`` opens the request only once the limiter lets it through, so its timeout
        (``seconds``, passed to the HTTP client by ``make``; else the endpoint's) never counts
        the wait in our queue. With ``refuse`` (the request carries a ``response_format``), a
        failure that refuses it is never retried whatever its status (llama-cpp-python answers
        a ``response_format`` it does not know with a 500).
        """

        def retryable(exc: BaseException) -> bool:
            if refuse and (f := failure_of(exc)) and refuses_response_format(f.status, f.body):
                return False
            return self._retryable(exc)

        attempts = 1
        if self._closer is None and self.owns_client:
            # The client's pool opens on this loop: closed, at the latest, as the loop ends.
            self._closer = at_loop_shutdown(self.aclose)
        try:
            try:
                # The first attempt is made before the retry policy is built: most calls
                # succeed, and building tenacity's machinery was a tenth of a call's CPU.
                # The slot is held only while the request is open, not while backing off.
                async with self.limiter:
                    return await make()
            except Exception as exc:
                if self.max_retries == 0 or not retryable(exc):
                    raise
                pause = self._backoff(exc, 1)
                self._say_retry(exc, 1, pause, model, role)
                await asyncio.sleep(pause)

            def said(state: RetryCallState) -> None:
                exc = state.outcome.exception() if state.outcome else None
                pause = state.next_action.sleep if state.next_action else 0.0
                self._say_retry(exc, state.attempt_number + 1, pause, model, role)

            retrying = AsyncRetrying(
                stop=stop_after_attempt(self.max_retries),
                wait=self._wait,
                before_sleep=said,
                retry=retry_if_exception(retryable),
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    async with self.limiter:
                        attempts += 1
                        return await make()
        except IncompleteReply as exc:
            raise EndpointError(
                f"{exc} (after {attempts} attempt(s))",
                endpoint=self.label(model),
                role=role,
                status=200,
                retryable=exc.retryable,
            ) from exc
        except Exception as exc:
            failure = failure_of(exc)
            if failure is None:
                raise
            _redact_cause(exc)  # it stays chained as the cause
            raise self._failure(failure, model, role, seconds, attempts, retryable(exc)) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _failure(
        self,
        exc: Failure,
        model: str | None,
        role: str | None,
        seconds: float | None,
        attempts: int,
        retryable: bool,
    ) -> EndpointError:
        """The package's error for a request that failed for good. A server may echo the key
        it was sent (``Incorrect API key provided: sk-...``): the EndpointError redacts its
        own text, and the chained SDK exception has been redacted in place."""
        label = self.label(model)
        if exc.kind == "timeout":
            said = exc.message if exc.message.startswith("no first token") else None
            return EndpointTimeout(
                f"{said or f'no reply within {seconds or self.timeout:g} s'} after {attempts} "
                "attempt(s)",
                endpoint=label,
                role=role,
                retryable=True,
            )
        if exc.kind == "status":
            return EndpointError(
                _status_message(exc.status),
                endpoint=label,
                status=exc.status,
                body=exc.body,
                role=role,
                retryable=retryable,
            )
        if exc.kind == "connection":
            return EndpointError(
                f"connection failed: {exc.message}", endpoint=label, role=role, retryable=True
            )
        return EndpointError(
            f"malformed reply: {exc.message}", endpoint=label, role=role, status=200, retryable=True
        )

    async def aclose(self) -> None:
        if self._logprobs_probe is not None and not self._logprobs_probe.done():
            self._logprobs_probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._logprobs_probe
        if self.owns_client:
            await self.client.close()


def _answered(incomplete: Sequence[str | None], request: ChatRequest) -> None:
    """Fail a call whose reply is no answer, unless its caller asked for none."""
    if request.answer_required:
        why_no_answer(incomplete)


def _status_message(status: int | None) -> str:
    if status is None:
        return "the stream reported an error"
    return {400: "bad request", 401: "unauthorized", 403: "forbidden", 404: "not found"}.get(
        status, "request failed"
    )


# -- the process-wide registry ---------------------------------------------------------------

# asyncio primitives and connection pools belong to one event loop, so endpoints are shared
# per loop: every graph running on a loop shares one client and one limit per server. A loop's
# endpoints are closed and forgotten when it shuts down (a client's pool holds its loop, so
# the weak key alone would never let go of it).
_registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, Endpoint]]
_registry = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()
_shutdown_hooks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]
_shutdown_hooks = weakref.WeakKeyDictionary()

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


def get_endpoint(
    config: RoleConfig,
    *,
    role: str = "role",
    base_url: str | None = None,
    client: ClientSource | None = None,
) -> Endpoint:
    """The shared :class:`Endpoint` for a role's server on the running event loop.

    ``base_url`` overrides the role's (used for the embedded endpoint). Roles that name the same
    server, key variable and client settings share one client and one concurrency limit; where
    they ask for different limits, the smallest applies. ``client`` is the operator's own
    (:data:`ClientSource`): used as given (its base URL, key, headers and HTTP client), never
    closed here; roles handed the same one share its endpoint.

    The embedded server decodes one request at a time, so its endpoint sends no more than the
    server's slots at once (the rest queue here, where waiting does not count against the
    timeout), scales each request's timeout to its ``max_tokens`` at the server's
    ``min_tokens_per_second``, and never retries a timeout.

    Raises:
        ConfigError: the role names an API key variable (or header variable) that is not set.
    """
    loop = asyncio.get_running_loop()
    limit = config.max_concurrency or MAX_CONCURRENCY
    settings = {k: getattr(config, k) for k in _CLIENT_FIELDS}
    if client is not None:
        key: Any = ("client", id(client))
        url = ""
        local = None
    else:
        url = (base_url or config.base_url or "").rstrip("/")
        if not url:
            raise ValueError("get_endpoint needs a base URL (resolve the embedded endpoint first)")
        key = (url, config.api_key_env or "", json.dumps(settings, sort_keys=True, default=str))
        local = _embedded_at(url) if not config.base_url else None
        if local is not None:
            limit = min(limit, local.slots)
    with _registry_lock:
        endpoints = _registry.get(loop)
        if endpoints is None:
            endpoints = _registry[loop] = {}
            # One hook per loop, kept for its life: a replaced hook, collected, would run its
            # close then, closing the endpoints made after ``aclose_endpoints`` emptied this.
            if loop not in _shutdown_hooks:
                _shutdown_hooks[loop] = at_loop_shutdown(aclose_endpoints)
        endpoint = endpoints.get(key)
        if endpoint is None:
            owned = client is None or not isinstance(client, AsyncOpenAI)
            if client is None:
                made = _client_for(config, role, url)
            else:
                made = client if isinstance(client, AsyncOpenAI) else client()
                # The operator's key, never read by this package, may still be echoed back.
                register_secret(getattr(made, "api_key", None) or None)
            endpoint = Endpoint(
                client=made,
                own_client=owned,
                connect_timeout=config.connect_timeout,
                max_concurrency=limit,
                timeout=config.timeout or CALL_TIMEOUT_S,
                # A local server queues inside itself: its first token may come late by design.
                first_byte_timeout=config.first_byte_timeout if local is None else None,
                max_retries=config.max_retries if config.max_retries is not None else MAX_RETRIES,
                backoff=config.backoff if config.backoff is not None else BACKOFF_S,
                min_tokens_per_second=(
                    local.settings.min_tokens_per_second if local is not None else None
                ),
                retry_timeouts=local is None,
            )
            if local is not None:
                # llama-cpp-python's server knows only the json_object form (and answers
                # the other with a 500), so it is not asked the other on every start.
                endpoint.json_modes = ["json_object"]
                endpoint.json_mode_known = True
            endpoints[key] = endpoint
        elif limit < endpoint.limiter.limit:
            endpoint.limiter.limit = limit
    return endpoint


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


def _embedded_at(url: str) -> EmbeddedServer | None:
    """The embedded server running at ``url``, if this process started one there."""
    from langgraph_feedit.embedded import running_server

    return running_server(url)


async def aclose_endpoints() -> None:
    """Close every endpoint client of the running loop (optional: clients close at exit)."""
    loop = asyncio.get_running_loop()
    with _registry_lock:
        endpoints = _registry.pop(loop, {})
    await asyncio.gather(*(endpoint.aclose() for endpoint in endpoints.values()))


def calls_in_flight() -> int:
    """Requests open right now on every endpoint of the running loop (for progress displays)."""
    loop = asyncio.get_running_loop()
    with _registry_lock:
        endpoints = list(_registry.get(loop, {}).values())
    return sum(e.limiter.active for e in endpoints)


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
