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

The endpoint is built in layers, each a module of its own: ``_failures`` (the SDK's failures in
the package's terms), ``_clients`` (making a client, the shared limiter, closing at loop
shutdown), ``_requests`` (one request and the retry policy), ``_sampling`` (chat requests and
what the server was found to support); this module adds the public calls and the per-loop
registry of endpoints (:func:`get_endpoint`). Every public name is importable from here.
"""

from __future__ import annotations

import asyncio
import json
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import openai
from openai import AsyncOpenAI

from langgraph_feedit._clients import (
    _CLIENT_FIELDS,
    ClientSource,
    Transport,
    _client_for,
    _Limiter,
    at_loop_shutdown,
    make_client,
    role_clients,
)
from langgraph_feedit._clients import client_base_url as client_base_url
from langgraph_feedit._failures import Failure, failure_of, is_retryable
from langgraph_feedit._sampling import PROBE_MESSAGES as PROBE_MESSAGES
from langgraph_feedit._sampling import Sampling
from langgraph_feedit.chatapi import (
    DEFAULT_THINK_TAGS,
    ChatRequest,
    ChatResult,
    JsonMode,
    TokenLogprobs,
    pooled_reward,
)
from langgraph_feedit.config import NO_KEY, RoleConfig
from langgraph_feedit.defaults import BACKOFF_S, CALL_TIMEOUT_S, MAX_CONCURRENCY, MAX_RETRIES
from langgraph_feedit.errors import EndpointError, register_secret
from langgraph_feedit.usage import Usage

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


class Endpoint(Sampling):
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
        """Whether the server returns ``logprobs`` when asked: unknown until tried."""
        self.yes_no_unanswered = False
        """Whether a principle question here got a first token that was no Yes or No (a
        reasoning model that thinks first): its candidates are rated instead from then on."""
        self._default_model: str | None = None

    def __repr__(self) -> str:
        return f"Endpoint({self.base_url!r}, limit={self.limiter.limit})"

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
