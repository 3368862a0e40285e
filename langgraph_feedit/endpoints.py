"""OpenAI-compatible endpoints: one client per endpoint, one retry policy, shared limits.

This module knows the OpenAI-compatible protocol and nothing about trees. An :class:`Endpoint`
wraps one HTTP client (:mod:`langgraph_feedit.transport`), tenacity as its one retry policy, and
a concurrency limiter that every run in the process shares. Calls:

- :meth:`Endpoint.chat` samples ``n`` completions of a conversation. It asks for ``n > 1`` in one
  request only where the role allows it, checks how many choices came back (llama.cpp answers
  ``n=2`` with one choice and no error) and makes up the rest with parallel single calls.
  It can ask for the first tokens' ``top_logprobs`` (a principle judge reads them) and for
  output constrained by a JSON schema (``response_format``), falling back to plain text on a
  server that refuses it and remembering that per endpoint.
- :meth:`Endpoint.reward` scores a conversation with vLLM's pooling API (reward models).

Failures become :class:`~langgraph_feedit.errors.EndpointError` naming the endpoint, the status
and the body, never the key. Cancelling the calling task closes the HTTP request, so the server
sees a disconnect.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

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
from langgraph_feedit.errors import EndpointError, EndpointTimeout, redact, register_secret
from langgraph_feedit.transport import HttpClient, TransportError, at_loop_shutdown
from langgraph_feedit.usage import Usage

if TYPE_CHECKING:
    from langgraph_feedit.embedded import EmbeddedServer

__all__ = [
    "ChatResult",
    "Endpoint",
    "TokenLogprobs",
    "aclose_endpoints",
    "calls_in_flight",
    "get_endpoint",
    "is_retryable",
]

RETRYABLE_STATUS = frozenset({408, 409, 429})
_MAX_RETRY_AFTER = 60.0
_BACKOFF_MAX = 30.0


def is_retryable(exc: BaseException) -> bool:
    """Whether a failure is transient: connection errors, timeouts, malformed replies (a
    broken stream, an empty reply among them), 408/409/429 and 5xx. A 400 (bad request) or
    401/403/404 is never retried, nor a reply that ran out of tokens while thinking."""
    if isinstance(exc, EndpointError | IncompleteReply):
        return exc.retryable
    if isinstance(exc, TransportError):
        if exc.kind != "status":
            return True
        return exc.status is None or exc.status in RETRYABLE_STATUS or exc.status >= 500
    return False


def _retry_after(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (``Retry-After`` or ``retry-after-ms``), capped."""
    if not isinstance(exc, TransportError) or exc.retry_after is None:
        return None
    return min(max(exc.retry_after, 0.0), _MAX_RETRY_AFTER)


class _Limiter:
    """A concurrency limit whose size can shrink when another role asks for less.

    Waiters are served first come, first served (``asyncio.Condition`` wakes in FIFO order).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self.peak = 0
        self._cond = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self.active < self.limit)
            self.active += 1
            self.peak = max(self.peak, self.active)

    async def __aexit__(self, *exc: object) -> None:
        async with self._cond:
            self.active -= 1
            self._cond.notify()


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
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str,
        max_concurrency: int = 16,
        timeout: float = 120.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        min_tokens_per_second: float | None = None,
        retry_timeouts: bool = True,
    ) -> None:
        if min_tokens_per_second is not None and min_tokens_per_second <= 0:
            raise ValueError(f"min_tokens_per_second must be positive, got {min_tokens_per_second}")
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout
        self.min_tokens_per_second = min_tokens_per_second
        self.retry_timeouts = retry_timeouts
        self.limiter = _Limiter(max_concurrency)
        if api_key != NO_KEY:
            register_secret(api_key)  # for endpoints made with a key directly, not from a role
        self.http = HttpClient(api_key, user_agent=f"langgraph-feedit/{_version()}")
        self.n_supported: bool | None = None
        """Whether the server honours ``n > 1``: unknown until tried."""
        self.json_modes: list[JsonMode] = ["json_schema", "json_object"]
        """The ``response_format`` forms still worth trying here, best first; a form the
        server refuses is dropped, so it is asked once per endpoint, not once per call."""
        self.json_mode_known = False
        """Whether a call has found which form (if any) this server takes."""
        self._json_probe = asyncio.Lock()
        self.logprobs_supported: bool | None = None
        """Whether the server returns ``logprobs`` when asked: unknown until tried."""
        self.yes_no_unanswered = False
        """Whether a principle question here got a first token that was no Yes or No (a
        reasoning model that thinks first): its candidates are rated instead from then on."""
        self._default_model: str | None = None

    def __repr__(self) -> str:
        return f"Endpoint({self.base_url!r}, limit={self.limiter.limit})"

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
                lambda: self.http.request_json(
                    "GET", f"{self.base_url}/models", seconds=self.timeout
                ),
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
        if not self.json_mode_known:
            # Until one call has found the form this server takes, calls wait for it, so a
            # wave of first calls is not refused once each.
            async with self._json_probe:
                if not self.json_mode_known:
                    result = await self._json_ladder(request, json_schema)
                    self.json_mode_known = True
                    return result
        return await self._json_ladder(request, json_schema)

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
                    self.http.stream_events(
                        f"{self.base_url}/chat/completions", body, seconds=seconds
                    ),
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
            reply = await self.http.request_json(
                "POST", f"{self.base_url}/chat/completions", body=body, seconds=seconds
            )
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
        root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        body = {"model": model, "messages": [dict(m) for m in messages]}
        reply = await self._call(
            lambda: self.http.request_json(
                "POST", f"{root}/pooling", body=body, seconds=self.timeout
            ),
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

    # -- the one retry policy --------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = _retry_after(exc)
        if asked is not None:
            return asked + random.uniform(0, 0.1 * asked + 0.01)
        exp = min(self.backoff * 2.0 ** (state.attempt_number - 1), _BACKOFF_MAX)
        return exp + random.uniform(0, exp)

    def _retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, TransportError) and exc.kind == "timeout" and not self.retry_timeouts:
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
            refused = (
                refuse
                and isinstance(exc, TransportError)
                and refuses_response_format(exc.status, exc.body)
            )
            return self._retryable(exc) and not refused

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(retryable),
            reraise=True,
        )
        attempts = 0
        try:
            async for attempt in retrying:
                with attempt:
                    # The slot is held only while the request is open, not while backing off.
                    async with self.limiter:
                        attempts += 1
                        return await make()
        except TransportError as exc:
            raise self._failure(exc, model, role, seconds, attempts, retryable(exc)) from exc
        except IncompleteReply as exc:
            raise EndpointError(
                f"{exc} (after {attempts} attempt(s))",
                endpoint=self.label(model),
                role=role,
                status=200,
                retryable=exc.retryable,
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _failure(
        self,
        exc: TransportError,
        model: str | None,
        role: str | None,
        seconds: float | None,
        attempts: int,
        retryable: bool,
    ) -> EndpointError:
        """The package's error for a request that failed for good. A server may echo the key
        it was sent (``Incorrect API key provided: sk-...``): the EndpointError redacts its
        own text, and the chained TransportError never holds the body in its message."""
        label = self.label(model)
        exc.body = redact(exc.body) if exc.body else exc.body  # it stays chained as the cause
        if exc.kind == "timeout":
            return EndpointTimeout(
                f"no reply within {seconds or self.timeout:g} s after {attempts} attempt(s)",
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
                f"connection failed: {exc}", endpoint=label, role=role, retryable=True
            )
        return EndpointError(
            f"malformed reply: {exc}", endpoint=label, role=role, status=200, retryable=True
        )

    async def aclose(self) -> None:
        await self.http.aclose()


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


def _version() -> str:
    from langgraph_feedit import __version__

    return __version__


# -- the process-wide registry ---------------------------------------------------------------

# asyncio primitives and connection pools belong to one event loop, so endpoints are shared
# per loop: every graph running on a loop shares one client and one limit per server. A loop's
# endpoints are closed and forgotten when it shuts down (an aiohttp session holds its loop, so
# the weak key alone would never let go of it).
_registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], Endpoint]]
_registry = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()
_shutdown_hooks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]
_shutdown_hooks = weakref.WeakKeyDictionary()


def get_endpoint(
    config: RoleConfig, *, role: str = "role", base_url: str | None = None
) -> Endpoint:
    """The shared :class:`Endpoint` for a role's server on the running event loop.

    ``base_url`` overrides the role's (used for the embedded endpoint). Roles that name the same
    server and key variable share one client and one concurrency limit; where they ask for
    different limits, the smallest applies.

    The embedded server decodes one request at a time, so its endpoint sends no more than the
    server's slots at once (the rest queue here, where waiting does not count against the
    timeout), scales each request's timeout to its ``max_tokens`` at the server's
    ``min_tokens_per_second``, and never retries a timeout.

    Raises:
        ConfigError: the role names an API key variable that is not set.
    """
    url = (base_url or config.base_url or "").rstrip("/")
    if not url:
        raise ValueError("get_endpoint needs a base URL (resolve the embedded endpoint first)")
    loop = asyncio.get_running_loop()
    key = (url, config.api_key_env or "")
    limit = config.max_concurrency or 16
    local = _embedded_at(url) if not config.base_url else None
    if local is not None:
        limit = min(limit, local.slots)
    with _registry_lock:
        endpoints = _registry.get(loop)
        if endpoints is None:
            endpoints = _registry[loop] = {}
            _shutdown_hooks[loop] = at_loop_shutdown(aclose_endpoints)
        endpoint = endpoints.get(key)
        if endpoint is None:
            endpoint = Endpoint(
                url,
                api_key=config.api_key(role),
                max_concurrency=limit,
                timeout=config.timeout or 120.0,
                max_retries=config.max_retries if config.max_retries is not None else 4,
                backoff=config.backoff if config.backoff is not None else 0.5,
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
