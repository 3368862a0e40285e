"""One request to an OpenAI-compatible server and the one retry policy: what every
:class:`~langgraph_feedit.endpoints.Endpoint` is built on. A request's reply is read as plain
JSON (a stream as its events); a transient failure is retried by tenacity, a lasting one becomes
the package's :class:`~langgraph_feedit.errors.EndpointError`."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import httpx2
from openai import AsyncOpenAI
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from langgraph_feedit._clients import _NO_REQUEST_TELEMETRY, _Events, _Limiter, at_loop_shutdown
from langgraph_feedit._failures import (
    Failure,
    FirstByteTimeout,
    MalformedReply,
    _redact_cause,
    _retry_after,
    _status_message,
    failure_of,
    is_retryable,
)
from langgraph_feedit.chatapi import IncompleteReply, refuses_response_format
from langgraph_feedit.errors import EndpointError, EndpointTimeout

# The package's logger itself: its redacting filter sees only records logged on it (errors.py).
_log = logging.getLogger("langgraph_feedit")

_BACKOFF_MAX = 30.0

_ONE_ATTEMPT = contextvars.ContextVar("feedit_one_attempt", default=False)


@contextlib.contextmanager
def one_attempt() -> Iterator[None]:
    """Requests made inside (in this task) are tried once, never retried: a probe, where
    asking again would only keep waiting whoever waits on it."""
    token = _ONE_ATTEMPT.set(True)
    try:
        yield
    finally:
        _ONE_ATTEMPT.reset(token)


class Requests:
    """The requests of one server (the base of :class:`~langgraph_feedit.endpoints.Endpoint`,
    whose constructor sets what is declared here)."""

    base_url: str
    client: AsyncOpenAI
    owns_client: bool
    connect_timeout: float | None
    timeout: float
    first_byte_timeout: float | None
    min_tokens_per_second: float | None
    max_retries: int
    backoff: float
    retry_timeouts: bool
    limiter: _Limiter
    _closer: AsyncGenerator[None, None] | None
    _chat_path: str
    _default_model: str | None

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
                if self.max_retries == 0 or _ONE_ATTEMPT.get() or not retryable(exc):
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
        if self.owns_client:
            await self.client.close()
