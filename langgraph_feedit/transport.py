"""The HTTP side of an OpenAI-compatible endpoint: JSON in, JSON or server-sent events out.

An :class:`HttpClient` posts plain JSON bodies over one aiohttp session (its own connection
pool) and hands back plain parsed JSON; every failure is a :class:`TransportError` of one of four
kinds, which :mod:`langgraph_feedit.endpoints` turns into the package's errors and its one retry
policy.

Why not the ``openai`` SDK's client: at zero latency its request path (option building, httpx's
client and httpcore's pool, response casting into pydantic models) took about 3.7 ms of CPU per
call here, against 0.7 ms for the same POST through aiohttp (``bench/endpoints.py``). The
graph's bodies are plain JSON already and it reads a few fields of each reply, so nothing the SDK
adds is used; aiohttp is also what vLLM's and SGLang's own serving benchmarks post with, for the
same reason.

A session belongs to the event loop it was made on. It is closed by :meth:`HttpClient.aclose`
or, at the latest, when that loop shuts down (:func:`at_loop_shutdown`), so a script that
never closes its endpoints gets no "Unclosed client session" warnings.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import aiohttp

__all__ = ["HttpClient", "TransportError", "at_loop_shutdown"]

FailureKind = Literal["status", "timeout", "connection", "malformed"]

_MAX_ERROR_BODY = 4000


class TransportError(Exception):
    """One failed request: ``kind`` says which way it failed.

    ``status``, ``body`` and ``retry_after`` (seconds the server asked us to wait, from
    ``Retry-After`` or ``retry-after-ms``) are set for ``"status"`` failures. The body is kept
    out of the exception's message, so a traceback never shows what a server echoed back.
    """

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        status: int | None = None,
        body: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind
        self.status = status
        self.body = body
        self.retry_after = retry_after


def _retry_after(headers: Any) -> float | None:
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000.0
        if "retry-after" in headers:
            return float(headers["retry-after"])
    except ValueError:
        return None  # an HTTP date: the caller's own backoff applies
    return None


def _dumps(body: Any) -> bytes:
    # Compact, UTF-8 and no NaN: what the OpenAI SDK sends.
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


class HttpClient:
    """One server's connection pool and headers.

    ``api_key`` goes out as ``Authorization: Bearer ...`` on every request and nowhere else.
    The pool has no size limit of its own: the endpoint's limiter decides how many requests
    are open.
    """

    def __init__(self, api_key: str, *, user_agent: str) -> None:
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": user_agent,
        }
        self._session: aiohttp.ClientSession | None = None
        self._closer: AsyncGenerator[None, None] | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                headers=self._headers,
                # The pool reads no proxy or netrc settings from the environment: a call goes to
                # the server its role names and carries only that role's key.
                trust_env=False,
                auto_decompress=True,
            )
            self._closer = at_loop_shutdown(self._session.close)
        return self._session

    async def request_json(self, method: str, url: str, *, body: Any = None, seconds: float) -> Any:
        """One request; the reply's parsed JSON (a 2xx answer whose body is JSON)."""
        session = self._open()
        data = None if body is None else _dumps(body)
        try:
            async with session.request(
                method, url, data=data, timeout=aiohttp.ClientTimeout(total=seconds)
            ) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise _status_error(response, raw)
        except TimeoutError as exc:
            raise TransportError("timeout", f"no reply within {seconds:g} s") from exc
        except aiohttp.ClientError as exc:
            raise _client_error(exc) from exc
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise TransportError(
                "malformed", f"the reply is not JSON ({exc})", body=_text(raw)
            ) from None

    async def stream_events(
        self, url: str, body: Any, *, seconds: float
    ) -> AsyncIterator[dict[str, Any]]:
        """``POST`` with a streamed reply: each server-sent event's ``data`` as parsed JSON, up
        to ``[DONE]`` (a stream that ends without it is a ``malformed`` failure). ``seconds``
        bounds the wait for the reply and each gap between events, not the whole stream (a long
        answer may take longer than any one gap)."""
        session = self._open()
        limits = aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)
        try:
            async with session.post(url, data=_dumps(body), timeout=limits) as response:
                if response.status >= 400:
                    raise _status_error(response, await response.read())
                data: list[str] = []
                async for line in response.content:
                    text = line.decode("utf-8", errors="replace").rstrip("\r\n")
                    if text.startswith("data:"):
                        data.append(text[5:].removeprefix(" "))
                        continue
                    if text or not data:
                        continue  # another field (event:, id:, a comment), or no event yet
                    payload, data = "\n".join(data), []
                    if payload == "[DONE]":
                        return
                    yield _event(payload)
                if data and (payload := "\n".join(data)) == "[DONE]":
                    return
                if data:
                    yield _event(payload)
                # The connection closed before ``[DONE]``: what came may be a whole answer or
                # half of one, and only a finished stream says which.
                raise TransportError("malformed", "the stream ended without [DONE]")
        except TimeoutError as exc:
            raise TransportError("timeout", f"no data within {seconds:g} s") from exc
        except aiohttp.ClientError as exc:
            raise _client_error(exc) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _text(raw: bytes) -> str:
    return raw[:_MAX_ERROR_BODY].decode("utf-8", errors="replace")


def _status_error(response: aiohttp.ClientResponse, raw: bytes) -> TransportError:
    return TransportError(
        "status",
        f"HTTP {response.status}",
        status=response.status,
        body=_text(raw),
        retry_after=_retry_after(response.headers),
    )


def _client_error(exc: aiohttp.ClientError) -> TransportError:
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ContentTypeError):
        return TransportError("malformed", f"the reply broke off ({exc})")
    # Connection refused or reset, a server that hung up: the request may be sent again.
    return TransportError("connection", str(exc) or type(exc).__name__)


def _event(payload: str) -> dict[str, Any]:
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise TransportError("malformed", f"a streamed event is not JSON ({exc})") from None
    if not isinstance(event, dict):
        raise TransportError("malformed", "a streamed event is not a JSON object")
    if "error" in event and "choices" not in event:
        # What an OpenAI-compatible server sends when a stream fails after its 200.
        raise TransportError(
            "status", "the stream reported an error", status=None, body=json.dumps(event)
        )
    return event


# -- closing pools when their loop ends --------------------------------------------------------


def at_loop_shutdown(close: Callable[[], Awaitable[None]]) -> AsyncGenerator[None, None]:
    """Await ``close()`` when the running loop shuts down (``asyncio.run`` and
    ``asyncio.Runner`` call ``loop.shutdown_asyncgens()`` before they close the loop).

    An aiohttp session left open when its loop closes logs "Unclosed client session" once it
    is collected. The one shutdown hook a loop offers a library is that it closes every async
    generator still suspended, so each session gets one: suspended at its ``yield``, its
    ``finally`` runs in the loop's last turns. The loop holds its async generators weakly: the
    caller keeps the returned generator (collected early, it runs ``close`` then).
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
