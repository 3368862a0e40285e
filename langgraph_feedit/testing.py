"""A simulated OpenAI-compatible server on 127.0.0.1, for tests and benchmarks.

Tests and benchmarks need a backend that behaves like a real one on the wire (HTTP, SSE, status
codes, dropped connections, queueing under load) yet answers quickly, deterministically and
without a model. ``SimServer`` is that backend: real aiohttp over loopback, in its own thread and
event loop so that sync tests, async tests (whose loop is separate) and subprocesses all reach it.

Replies are pseudo-words drawn from an RNG seeded by the server seed, the request's messages and
sampling settings, its ``seed`` field and the choice index, so the same request always gets the same
text and a different request (an edit of a draft) gets different text. One word is one token.
Two content hooks let parsers be tested: a last user message containing "Rate the response" or
"score" gets a final line ``Score: X`` (X in 1..10), and one containing "Evaluate the response"
starts with ``The response is {not|slightly|partially|mostly|perfectly} helpful.``; an
Arena-Hard judge prompt (``<|The Start of Assistant A's Answer|>``) ends with a verdict such as
``[[A>B]]`` that prefers the longer answer (strongly when it is 1.5 times as long).

Example::

    with SimServer(seed=1, ttft=0.01, rate=500, capacity=4) as sim:
        client = OpenAI(base_url=sim.base_url, api_key="x")
        client.chat.completions.create(model="sim-model", messages=[...])
        assert sim.call_count == 1

From another process: ``python -m langgraph_feedit.testing --port 0 --ttft 0.05 --rate 200`` prints
one JSON line ``{"base_url": ...}`` and serves until SIGTERM or SIGINT; ``GET /_sim/stats`` reports
its counters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import random
import re
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, Literal

from aiohttp import web

__all__ = ["Fault", "RecordedRequest", "SimServer", "main"]

FaultKind = Literal["500", "429", "drop", "malformed", "slow"]
_FAULT_KINDS = ("500", "429", "drop", "malformed", "slow")
_SYLLABLES = ("ba", "ce", "di", "fo", "gu", "ka", "le", "mi", "no", "pu", "ra", "se", "ti")
_SYLLABLES_MORE = ("vo", "zu", "an", "el", "in", "or", "um", "tra", "ste", "plo", "gri")
_LEVELS = ("not", "slightly", "partially", "mostly", "perfectly")
_SAMPLING_KEYS = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed")
_SECRET_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "proxy-authorization"})
_TOKENS_PER_MESSAGE = 3
_Serve = Callable[[web.Request, "RecordedRequest"], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Fault:
    """A failure the server injects into chat and pooling requests.

    Attributes:
        kind: ``"500"`` (OpenAI-shaped error), ``"429"`` (with ``Retry-After``), ``"drop"`` (the
            connection is closed without a reply), ``"malformed"`` (200 with a body that is not
            JSON) or ``"slow"`` (``slow_s`` extra delay, to trip the client's timeout).
        rate: probability per request, drawn from an RNG seeded by the server seed and the
            request's arrival index, so a run replays the same faults.
        first: the first ``first`` matching requests get this fault for sure.
        match: only requests whose JSON body text contains this substring are considered.
        retry_after: seconds sent in the ``Retry-After`` header of a 429.
        slow_s: the extra delay of a ``"slow"`` fault.
    """

    kind: FaultKind
    rate: float = 0.0
    first: int = 0
    match: str | None = None
    retry_after: float = 0.05
    slow_s: float = 30.0

    def __post_init__(self) -> None:
        if self.kind not in _FAULT_KINDS:
            raise ValueError(f"Fault.kind must be one of {_FAULT_KINDS}, got {self.kind!r}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"Fault.rate must be in [0, 1], got {self.rate}")
        if self.first < 0 or self.retry_after < 0 or self.slow_s < 0:
            raise ValueError("Fault.first, retry_after and slow_s must not be negative")


@dataclass
class RecordedRequest:
    """One chat or pooling request as the server saw it (``authorization`` shown as ``***``)."""

    index: int
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    started: float
    ended: float | None = None
    status: int | None = None
    fault: str | None = None
    disconnected: bool = False
    completion_tokens: int = 0


class _Slots:
    """FIFO slots: a request beyond capacity waits its turn, as in a serving engine's queue."""

    def __init__(self, capacity: int | None) -> None:
        self._free = capacity
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        if self._free is None:
            return
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as the client left
            raise

    def release(self) -> None:
        if self._free is None:
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


def _digest(*parts: Any) -> int:
    text = json.dumps(parts, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _error(status: int, message: str, kind: str, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return web.json_response(body, status=status)


_ARENA_ANSWER = re.compile(
    r"<\|the start of assistant ([ab])'s answer\|>(.*?)<\|the end of assistant \1's answer\|>",
    re.DOTALL,
)


def _arena_verdict(prompt: str) -> str:
    """A judge that prefers the longer answer: ``A>>B`` when A is 1.5 times as long."""
    lengths = {m.group(1): len(m.group(2).split()) for m in _ARENA_ANSWER.finditer(prompt)}
    a, b = lengths.get("a", 0), lengths.get("b", 0)
    if a == b:
        return "A=B"
    strong = max(a, b) >= 1.5 * max(1, min(a, b))
    if a > b:
        return "A>>B" if strong else "A>B"
    return "B>>A" if strong else "B>A"


def _words(rng: random.Random, count: int) -> list[str]:
    """Pseudo-words in sentences: readable enough to eyeball, one whitespace word per token."""
    out: list[str] = []
    sentence = 0
    for _ in range(count):
        word = "".join(rng.choice(_SYLLABLES + _SYLLABLES_MORE) for _ in range(rng.randint(1, 3)))
        out.append(word.capitalize() if sentence == 0 else word)
        sentence += 1
        if sentence >= 6 and rng.random() < 0.25:
            out[-1] += "."
            sentence = 0
    if out and not out[-1].endswith("."):
        out[-1] += "."
    return out


class SimServer:
    """A deterministic OpenAI-compatible chat and vLLM-style pooling server on 127.0.0.1.

    Service time per request is ``(ttft + completion_tokens / rate) * exp(normal(0, jitter))``
    (the longest choice counts for ``n > 1``; the jitter is seeded by the request body) unless
    ``latency_fn(body)`` returns a number. A request holds one of ``capacity`` slots while in
    service; the rest queue in arrival order. Waits are ``asyncio.sleep``, so a client that hangs up
    cancels its handler and is recorded as ``disconnected``.

    Endpoints: ``POST /v1/chat/completions``; ``POST /pooling`` and ``/v1/pooling``; ``GET
    /v1/models``; ``GET /health``; ``GET /_sim/stats``. ``requests`` lists chat and pooling
    requests only, so polling the others does not disturb what a test counts.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        ttft: float = 0.0,
        rate: float = float("inf"),
        jitter: float = 0.0,
        mean_tokens: int = 64,
        sd_tokens: float = 0.0,
        min_tokens: int = 1,
        capacity: int | None = None,
        faults: Sequence[Fault] = (),
        model: str = "sim-model",
        latency_fn: Callable[[dict[str, Any]], float | None] | None = None,
        reject_n: bool = False,
        ignore_n: bool = False,
        port: int = 0,
    ) -> None:
        if rate <= 0 or ttft < 0 or jitter < 0 or sd_tokens < 0:
            raise ValueError("rate must be positive; ttft, jitter and sd_tokens not negative")
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be at least 1 or None, got {capacity}")
        if min_tokens < 0 or mean_tokens < 0:
            raise ValueError("mean_tokens and min_tokens must not be negative")
        if reject_n and ignore_n:
            raise ValueError("reject_n and ignore_n are exclusive")
        self.seed, self.ttft, self.rate, self.jitter = seed, ttft, rate, jitter
        self.mean_tokens, self.sd_tokens, self.min_tokens = mean_tokens, sd_tokens, min_tokens
        self.capacity, self.model, self.latency_fn = capacity, model, latency_fn
        self.reject_n, self.ignore_n, self.port = reject_n, ignore_n, port
        self.base_url = ""
        self._lock = threading.Lock()
        self._faults: tuple[Fault, ...] = tuple(faults)
        self._fault_seen = [0] * len(self._faults)
        self._requests: list[RecordedRequest] = []
        self._prefixes: set[int] = set()
        self._in_flight = self._in_service = 0
        self._peak_in_flight = self._peak_service = self._disconnects = 0
        self._busy_s = 0.0
        self._created = int(time.time())
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        self._closing = False
        self._slots = _Slots(capacity)

    # -- observation -------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of chat and pooling requests, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def call_count(self) -> int:
        """Chat and pooling requests received (since the last ``reset_stats``)."""
        return len(self._requests)

    @property
    def in_flight(self) -> int:
        """Open chat and pooling requests, queued ones included."""
        return self._in_flight

    @property
    def peak_concurrency(self) -> int:
        """The most requests in service (holding a slot) at once."""
        return self._peak_service

    @property
    def peak_in_flight(self) -> int:
        """The most open requests at once, queued ones included."""
        return self._peak_in_flight

    @property
    def disconnects(self) -> int:
        """Requests whose client hung up before the reply was complete."""
        return self._disconnects

    @property
    def busy_s(self) -> float:
        """Seconds of slot time used: the sum over requests of the time each held a slot."""
        return self._busy_s

    def stats(self) -> dict[str, float]:
        """The counters served at ``GET /_sim/stats``."""
        return {
            "busy_s": round(self._busy_s, 6),
            "call_count": self.call_count,
            "in_flight": self.in_flight,
            "peak_concurrency": self.peak_concurrency,
            "peak_in_flight": self.peak_in_flight,
            "disconnects": self.disconnects,
        }

    def set_faults(self, faults: Sequence[Fault]) -> None:
        """Replace the faults; their ``first`` counters start again from zero."""
        with self._lock:
            self._faults = tuple(faults)
            self._fault_seen = [0] * len(self._faults)

    def reset_stats(self) -> None:
        """Forget requests, counters, fault counters and the prefix cache, as if freshly started."""
        with self._lock:
            self._requests.clear()
            self._prefixes.clear()
            self._fault_seen = [0] * len(self._faults)
            self._peak_in_flight, self._peak_service = self._in_flight, self._in_service
            self._disconnects = 0
            self._busy_s = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SimServer:
        """Serve in a daemon thread with its own event loop; return once listening."""
        if self._thread is not None:
            raise RuntimeError("SimServer is already started")
        ready = threading.Event()
        self._closing, self._start_error = False, None
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="SimServer", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._start_error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"SimServer could not start: {self._start_error}")
        return self

    def stop(self) -> None:
        """Close the server (open requests are cancelled) and join its thread."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None or loop is None or stop is None:
            return
        self._closing = True
        loop.call_soon_threadsafe(stop.set)
        thread.join()
        self._thread = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> SimServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(ready))
        except BaseException as exc:  # reported to start() rather than lost in the thread
            self._start_error = exc
        finally:
            ready.set()

    async def _serve(self, ready: threading.Event) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/pooling", self._pooling)
        app.router.add_post("/v1/pooling", self._pooling)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/_sim/stats", self._stats)
        runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", self.port)
            await site.start()
            self.port = int(runner.addresses[0][1])
            self._slots = _Slots(self.capacity)
            self.base_url = f"http://127.0.0.1:{self.port}/v1"
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    # -- plain endpoints ---------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        card = {"id": self.model, "object": "model", "created": self._created, "owned_by": "sim"}
        return web.json_response({"object": "list", "data": [card]})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    # -- shared request handling -------------------------------------------------------------

    async def _handle(self, request: web.Request, serve: _Serve) -> web.StreamResponse:
        """Record a chat or pooling request, apply its fault or ``serve`` it, note how it ended."""
        text = (await request.read()).decode("utf-8", errors="replace")
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        reply: web.StreamResponse
        headers = {
            k.lower(): "***" if k.lower() in _SECRET_HEADERS else v
            for k, v in request.headers.items()
        }
        with self._lock:
            record = RecordedRequest(
                len(self._requests), request.path, body, headers, time.monotonic()
            )
            self._requests.append(record)
            fault = self._pick_fault(record.index, text) if body else None
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        record.fault = fault.kind if fault is not None else None
        try:
            if not body:
                reply = _error(
                    400, "the request body must be a JSON object", "invalid_request_error"
                )
            elif fault is not None and fault.kind != "slow":
                reply = await self._fault_reply(request, fault)
            else:
                if fault is not None:
                    await asyncio.sleep(fault.slow_s)
                reply = await serve(request, record)
            record.status = reply.status
            return reply
        except (asyncio.CancelledError, ConnectionResetError):
            if record.fault != "drop" and not self._closing:
                record.disconnected = True
                with self._lock:
                    self._disconnects += 1
            raise
        finally:
            record.ended = time.monotonic()
            with self._lock:
                self._in_flight -= 1

    def _pick_fault(self, index: int, text: str) -> Fault | None:
        for i, fault in enumerate(self._faults):
            if fault.match is not None and fault.match not in text:
                continue
            seen = self._fault_seen[i]
            self._fault_seen[i] += 1
            if seen < fault.first:
                return fault
            if fault.rate > 0 and random.Random(f"{self.seed}:{index}:{i}").random() < fault.rate:
                return fault
        return None

    async def _fault_reply(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.kind == "500":
            return _error(500, "simulated internal server error", "server_error")
        if fault.kind == "429":
            reply = _error(429, "simulated rate limit", "rate_limit_exceeded")
            reply.headers["Retry-After"] = f"{fault.retry_after:g}"
            return reply
        if fault.kind == "malformed":
            broken = b'{"id": "chatcmpl-broken", "choices": ['
            return web.Response(status=200, body=broken, content_type="application/json")
        # "drop": hang up without a reply; losing the connection then cancels this handler.
        if request.transport is not None:
            request.transport.close()
        await asyncio.sleep(60)
        raise ConnectionResetError("connection dropped by a simulated fault")

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """Hold a serving slot: queue (FIFO) while all are busy, count the request as in service."""
        await self._slots.acquire()
        with self._lock:
            self._in_service += 1
            self._peak_service = max(self._peak_service, self._in_service)
        held = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._in_service -= 1
                self._busy_s += time.monotonic() - held
            self._slots.release()

    def _timing(self, body: dict[str, Any], tokens: int) -> tuple[float, float]:
        """Seconds before the first token and between tokens, from the latency model."""
        base_first, base_decode = self.ttft, tokens / self.rate
        total = self.latency_fn(body) if self.latency_fn is not None else None
        if total is None:
            mult = 1.0
            if self.jitter > 0:
                rng = random.Random(f"{self.seed}:jitter:{_digest(body)}")
                mult = math.exp(rng.gauss(0.0, self.jitter))
            return base_first * mult, (base_decode * mult / tokens if tokens else 0.0)
        base = base_first + base_decode
        first = total * base_first / base if base > 0 else total
        return first, ((total - first) / tokens if tokens else 0.0)

    def _prompt_usage(self, messages: list[Any]) -> tuple[int, int]:
        """Prompt tokens, and how many leading words an earlier request already had (cached).

        Every prefix of the flattened prompt is remembered by a chained hash, exactly to the word;
        memory grows with the total number of prompt words seen, which suits tests and benchmarks.
        """
        flat: list[str] = []
        prompt_tokens = 0
        for message in messages:
            role = message.get("role", "user") if isinstance(message, dict) else "user"
            words = _content_text(message.get("content") if isinstance(message, dict) else message)
            flat.append(f"<{role}>")
            flat.extend(words.split())
            prompt_tokens += len(words.split()) + _TOKENS_PER_MESSAGE
        chain: list[int] = []
        h = 0
        for word in flat:
            h = hash((h, word))
            chain.append(h)
        with self._lock:
            cached = 0
            while cached < len(chain) and chain[cached] in self._prefixes:
                cached += 1
            self._prefixes.update(chain)
        return prompt_tokens, cached

    # -- chat completions --------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, self._serve_chat)

    async def _serve_chat(
        self, request: web.Request, record: RecordedRequest
    ) -> web.StreamResponse:
        body = record.body
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(
                400, "'messages' must be a non-empty list", "invalid_request_error", "messages"
            )
        n = body.get("n") or 1
        if not isinstance(n, int) or n < 1:
            return _error(
                400, f"'n' must be a positive integer, got {n!r}", "invalid_request_error", "n"
            )
        if n > 1 and self.reject_n:
            message = f"n > 1 is not supported by this server (got n={n})"
            return _error(400, message, "invalid_request_error", "n")
        if self.ignore_n:
            n = 1
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        if cap is not None and (not isinstance(cap, int) or cap < 1):
            return _error(
                400,
                "'max_tokens' must be a positive integer",
                "invalid_request_error",
                "max_tokens",
            )
        key = _digest(self.seed, messages, {k: body.get(k) for k in _SAMPLING_KEYS})
        choices = [self._compose(messages, key, i, cap) for i in range(n)]
        prompt_tokens, cached = self._prompt_usage(messages)
        record.completion_tokens = sum(len(tokens) for tokens, _ in choices)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "total_tokens": prompt_tokens + record.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached},
        }
        longest = max(len(tokens) for tokens, _ in choices)
        first, per_token = self._timing(body, longest)
        reply_id = f"chatcmpl-{record.index}-{key:016x}"
        async with self._slot():
            if body.get("stream"):
                options = body.get("stream_options") or {}
                include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
                chunks = self._chunks(reply_id, choices, usage if include_usage else None)
                return await self._stream(request, chunks, first, per_token)
            await asyncio.sleep(first + per_token * longest)
        return web.json_response(
            {
                "id": reply_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model,
                "system_fingerprint": "sim",
                "choices": [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": "".join(tokens)},
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                    for i, (tokens, finish) in enumerate(choices)
                ],
                "usage": usage,
            }
        )

    def _compose(
        self, messages: list[Any], key: int, choice: int, cap: int | None
    ) -> tuple[list[str], str]:
        """One choice as tokens (each with its leading separator) and its finish reason."""
        rng = random.Random(f"{key}:{choice}")
        length = self.mean_tokens
        if self.sd_tokens > 0:
            length = round(rng.gauss(self.mean_tokens, self.sd_tokens))
        length = max(self.min_tokens, length)
        last_user = next(
            (
                _content_text(m.get("content")).lower()
                for m in reversed(messages)
                if isinstance(m, dict) and m.get("role") == "user"
            ),
            "",
        )
        head: list[str] = []
        tail: list[str] = []
        if "evaluate the response" in last_user:
            level = _LEVELS[_digest("level", key, choice) % len(_LEVELS)]
            head = f"The response is {level} helpful.".split()
        if "rate the response" in last_user or "score" in last_user:
            tail = ["\nScore:", f" {1 + _digest('score', key, choice) % 10}"]
        if "<|the start of assistant a's answer|>" in last_user:
            tail = ["\nMy", " final", " verdict:", f" [[{_arena_verdict(last_user)}]]"]
        words = head + _words(rng, max(1, length - len(head) - len(tail)))
        tokens = [words[0]] + [f" {w}" for w in words[1:]] + tail
        if cap is not None and len(tokens) > cap:
            return tokens[:cap], "length"
        return tokens, "stop"

    def _chunks(
        self, reply_id: str, choices: list[tuple[list[str], str]], usage: dict[str, Any] | None
    ) -> list[list[bytes]]:
        """SSE events grouped by decoding step: step 0 is the role, the last holds the ending."""

        def event(parts: list[dict[str, Any]], final_usage: dict[str, Any] | None = None) -> bytes:
            chunk: dict[str, Any] = {
                "id": reply_id,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": self.model,
                "choices": parts,
            }
            if usage is not None:
                chunk["usage"] = final_usage
            return f"data: {json.dumps(chunk)}\n\n".encode()

        def part(index: int, delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
            return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

        steps = [
            [event([part(i, {"role": "assistant", "content": ""}) for i in range(len(choices))])]
        ]
        for pos in range(max(len(tokens) for tokens, _ in choices)):
            parts = [
                part(i, {"content": t[pos]}) for i, (t, _) in enumerate(choices) if pos < len(t)
            ]
            steps.append([event(parts)])
        ending = [event([part(i, {}, finish) for i, (_, finish) in enumerate(choices)])]
        if usage is not None:
            ending.append(event([], usage))
        steps.append([*ending, b"data: [DONE]\n\n"])
        return steps

    async def _stream(
        self, request: web.Request, steps: list[list[bytes]], first: float, per_token: float
    ) -> web.StreamResponse:
        await asyncio.sleep(first)
        reply = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await reply.prepare(request)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for step, events in enumerate(steps):
            if 0 < step < len(steps) - 1 and per_token > 0:
                # Sleep to a deadline so that many short waits do not drift past the decode time.
                await asyncio.sleep(max(0.0, start + step * per_token - loop.time()))
            for data in events:
                await reply.write(data)
        await reply.write_eof()
        return reply

    # -- pooling (reward models) -------------------------------------------------------------

    async def _pooling(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, self._serve_pooling)

    async def _serve_pooling(
        self, request: web.Request, record: RecordedRequest
    ) -> web.StreamResponse:
        """vLLM's ``/pooling`` API as a reward model serves it: one score per input.

        Request, chat form: ``{"model": ..., "messages": [{"role": ..., "content": ...}, ...]}``;
        the score is drawn from the text of the last assistant message (the last message if there
        is none). Prompt form: ``{"model": ..., "input": "text" | ["text", ...]}``, one score per
        text. Reply::

            {"id": "pool-...", "object": "list", "created": 1700000000, "model": "sim-model",
             "data": [{"index": 0, "object": "pooling", "data": [3.1416]}],
             "usage": {"prompt_tokens": 12, "total_tokens": 12, "completion_tokens": 0,
                       "prompt_tokens_details": null}}

        Each score is a float in [-10, 10], fixed by the server seed and the scored text.
        """
        body = record.body
        messages = body.get("messages")
        raw = body.get("input")
        if isinstance(messages, list) and messages:
            scored = [m for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
            last = (scored or messages)[-1]
            texts = [_content_text(last.get("content") if isinstance(last, dict) else last)]
            prompt_tokens, _ = self._prompt_usage(messages)
        elif isinstance(raw, str) or (isinstance(raw, list) and raw):
            inputs: list[Any] = [raw] if isinstance(raw, str) or isinstance(raw[0], int) else raw
            texts = [t if isinstance(t, str) else json.dumps(t) for t in inputs]
            prompt_tokens = sum(len(t.split()) for t in texts)
        else:
            message = "the request needs 'messages' (chat form) or 'input' (prompt form)"
            return _error(400, message, "invalid_request_error", "input")
        scores = [
            round(random.Random(f"{self.seed}:reward:{t}").uniform(-10, 10), 4) for t in texts
        ]
        first, _ = self._timing(body, 0)
        async with self._slot():
            await asyncio.sleep(first)
        return web.json_response(
            {
                "id": f"pool-{record.index}-{_digest(self.seed, body):016x}",
                "object": "list",
                "created": int(time.time()),
                "model": self.model,
                "data": [
                    {"index": i, "object": "pooling", "data": [s]} for i, s in enumerate(scores)
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "total_tokens": prompt_tokens,
                    "completion_tokens": 0,
                    "prompt_tokens_details": None,
                },
            }
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Serve from the command line until SIGTERM or SIGINT, after printing ``{"base_url": ...}``."""
    parser = argparse.ArgumentParser(
        prog="python -m langgraph_feedit.testing",
        description="A simulated OpenAI-compatible server on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ttft", type=float, default=0.0, help="seconds to the first token")
    parser.add_argument("--rate", type=float, default=float("inf"), help="tokens per second")
    parser.add_argument("--jitter", type=float, default=0.0, help="relative sd of latency")
    parser.add_argument("--mean-tokens", type=int, default=64)
    parser.add_argument("--sd-tokens", type=float, default=0.0)
    parser.add_argument("--min-tokens", type=int, default=1)
    parser.add_argument("--capacity", type=int, default=None, help="serving slots; others queue")
    parser.add_argument("--model", default="sim-model")
    parser.add_argument("--reject-n", action="store_true", help="answer n>1 with 400")
    parser.add_argument("--ignore-n", action="store_true", help="answer n>1 with one choice")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="JSON",
        help='a Fault as JSON, e.g. \'{"kind": "500", "rate": 0.1}\'; repeatable',
    )
    args = parser.parse_args(argv)
    settings = vars(args)
    try:
        faults = [Fault(**json.loads(spec)) for spec in settings.pop("fault")]
        server = SimServer(faults=faults, **settings)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with server:
        print(json.dumps({"base_url": server.base_url}), flush=True)
        while not stop.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
