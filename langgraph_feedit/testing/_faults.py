"""Failures the simulated server injects: what a fault is, which request gets one, and the reply."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

FaultKind = Literal["500", "429", "401", "drop", "malformed", "slow", "truncated", "empty", "echo"]
_FAULT_KINDS = ("500", "429", "401", "drop", "malformed", "slow", "truncated", "empty", "echo")


@dataclass(frozen=True)
class Fault:
    """A failure the server injects into chat and pooling requests.

    Attributes:
        kind: ``"500"`` (OpenAI-shaped error), ``"429"`` (with ``Retry-After``), ``"401"``
            (OpenAI's ``Incorrect API key provided: <the key sent>``, echoing the bearer key as
            OpenAI-style servers do), ``"drop"`` (the
            connection is closed without a reply), ``"malformed"`` (200 with a body that is not
            JSON), ``"slow"`` (``slow_s`` extra delay, to trip the client's timeout),
            ``"truncated"`` (a stream that sends some text, then closes without its final
            chunk and ``[DONE]``; a plain request gets ``"malformed"``'s reply), ``"empty"``
            (a 200 reply, or a whole stream, whose content is empty) or ``"echo"`` (a whole
            200 answer that quotes the bearer key the request carried).
        rate: probability per request, drawn from an RNG seeded by the server seed and the
            request's arrival index, so a run replays the same faults.
        first: the first ``first`` matching requests get this fault for sure.
        match: only requests whose JSON body, written as compact JSON (``"seed":1``, no spaces
            after separators, non-ASCII kept), contains this substring are considered.
        retry_after: seconds sent in the ``Retry-After`` header of a 429.
        slow_s: the extra delay of a ``"slow"`` fault.
        echo_key: a ``"500"`` or ``"429"`` whose error message quotes the bearer key the
            request carried (a ``"401"`` always does).
    """

    kind: FaultKind
    rate: float = 0.0
    first: int = 0
    match: str | None = None
    retry_after: float = 0.05
    slow_s: float = 30.0
    echo_key: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _FAULT_KINDS:
            raise ValueError(f"Fault.kind must be one of {_FAULT_KINDS}, got {self.kind!r}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"Fault.rate must be in [0, 1], got {self.rate}")
        if self.first < 0 or self.retry_after < 0 or self.slow_s < 0:
            raise ValueError("Fault.first, retry_after and slow_s must not be negative")


class FaultPlan:
    """The faults in force and how many matching requests each has seen (for ``first``).

    Not thread-safe: the server calls it under its own lock, together with its other counters.
    """

    def __init__(self, faults: Sequence[Fault]) -> None:
        self.faults: tuple[Fault, ...] = tuple(faults)
        self._seen = [0] * len(self.faults)

    def restart(self) -> None:
        """Count matching requests from zero again, so ``first`` applies afresh."""
        self._seen = [0] * len(self.faults)

    def pick(self, seed: int, index: int, text: str) -> Fault | None:
        """The fault for the request at arrival ``index`` whose body text is ``text``, if any."""
        for i, fault in enumerate(self.faults):
            if fault.match is not None and fault.match not in text:
                continue
            seen = self._seen[i]
            self._seen[i] += 1
            if seen < fault.first:
                return fault
            if fault.rate > 0 and random.Random(f"{seed}:{index}:{i}").random() < fault.rate:
                return fault
        return None


def error_reply(
    status: int, message: str, kind: str, param: str | None = None, code: str | None = None
) -> web.Response:
    """An OpenAI-shaped error, as the official clients expect to parse it."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": code or status}}
    return web.json_response(body, status=status)


def _bearer(request: web.Request) -> str:
    """The key the request carried (``Authorization: Bearer <key>``), for the faults that echo
    it back the way OpenAI's servers do."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    chunk = {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "sim-model",
        "choices": [choice],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


async def _events(request: web.Request, events: list[bytes]) -> web.StreamResponse:
    reply = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await reply.prepare(request)
    for data in events:
        await reply.write(data)
    await reply.write_eof()
    return reply


async def fault_reply(
    request: web.Request, fault: Fault, body: dict[str, Any] | None = None
) -> web.StreamResponse:
    """The reply of every fault but ``"slow"`` (which only delays the real reply)."""
    stream = bool((body or {}).get("stream"))
    if fault.kind == "empty":
        if stream:
            role = _chunk({"role": "assistant", "content": ""})
            return await _events(request, [role, _chunk({}, "stop"), b"data: [DONE]\n\n"])
        empty = {
            "id": "chatcmpl-empty",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "sim-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1},
        }
        return web.json_response(empty)
    if fault.kind == "echo":
        # A whole, ordinary answer that quotes the key the request carried (JSON-escaped on
        # the wire, as any JSON writer sends it), streamed a few characters a chunk.
        text = f"Here is what I was sent: {_bearer(request)} and nothing else."
        if stream:
            pieces = [_chunk({"role": "assistant", "content": ""})]
            pieces += [_chunk({"content": text[i : i + 5]}) for i in range(0, len(text), 5)]
            pieces += [_chunk({}, "stop"), b"data: [DONE]\n\n"]
            return await _events(request, pieces)
        echo = {
            "id": "chatcmpl-echo",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "sim-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 12, "total_tokens": 13},
        }
        return web.json_response(echo)
    if fault.kind == "truncated" and stream:
        pieces = [_chunk({"role": "assistant", "content": ""})]
        pieces += [_chunk({"content": w}) for w in ("Half", " an", " answer")]
        return await _events(request, pieces)
    echoed = f" (key: {_bearer(request)})" if fault.echo_key else ""
    if fault.kind == "401":
        message = f"Incorrect API key provided: {_bearer(request)}."
        return error_reply(401, message, "invalid_request_error", code="invalid_api_key")
    if fault.kind == "500":
        return error_reply(500, f"simulated internal server error{echoed}", "server_error")
    if fault.kind == "429":
        reply = error_reply(429, f"simulated rate limit{echoed}", "rate_limit_exceeded")
        reply.headers["Retry-After"] = f"{fault.retry_after:g}"
        return reply
    if fault.kind in ("malformed", "truncated"):
        broken = b'{"id": "chatcmpl-broken", "choices": ['
        return web.Response(status=200, body=broken, content_type="application/json")
    # "drop": hang up without a reply; losing the connection then cancels this handler.
    if request.transport is not None:
        request.transport.close()
    await asyncio.sleep(60)
    raise ConnectionResetError("connection dropped by a simulated fault")
