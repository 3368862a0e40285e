"""The SDK's failures in the package's terms: which request failed how, and whether asking
again may help. The one place that knows the SDK's exception types (see :func:`failure_of`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Literal

import openai

from langgraph_feedit.chatapi import IncompleteReply
from langgraph_feedit.errors import EndpointError, redact

RETRYABLE_STATUS = frozenset({408, 409, 429})
_MAX_RETRY_AFTER = 60.0
_MAX_ERROR_BODY = 4000

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


def _status_message(status: int | None) -> str:
    if status is None:
        return "the stream reported an error"
    return {400: "bad request", 401: "unauthorized", 403: "forbidden", 404: "not found"}.get(
        status, "request failed"
    )
