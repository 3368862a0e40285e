"""The simulated server itself: its settings, latency model, lifecycle and HTTP handlers.

What a chat request is answered is decided in :mod:`._chat` and written by :mod:`._replies`,
which faults are injected from :mod:`._faults`, and the counters a test reads live in
:mod:`._ledger`; this module decides when a reply is sent.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from langgraph_feedit.supervise import Served
from langgraph_feedit.testing._chat import chat_reply
from langgraph_feedit.testing._faults import Fault, error_reply, fault_reply
from langgraph_feedit.testing._ledger import Ledger, RecordedRequest
from langgraph_feedit.testing._replies import (
    chat_completion,
    digest,
    pooled_texts,
    pooling_reply,
    reward_scores,
    sse_steps,
)

_SECRET_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "proxy-authorization"})
_Serve = Callable[[web.Request, RecordedRequest], Awaitable[web.StreamResponse]]


class SimServer(Served):
    """A deterministic OpenAI-compatible chat and vLLM-style pooling server on 127.0.0.1.

    Service time per request is ``(ttft + completion_tokens / rate) * exp(normal(0, jitter))``
    (the longest choice counts for ``n > 1``; the jitter is seeded by the request body) unless
    ``latency_fn(body)`` returns a number. A request holds one of ``capacity`` slots while in
    service; the rest queue in arrival order. Waits are ``asyncio.sleep``, so a client that hangs up
    cancels its handler and is recorded as ``disconnected``.

    Logprobs: a request with ``logprobs: true`` gets ``choices[].logprobs.content`` (one entry
    per token, each with up to ``top_logprobs`` alternatives, at most ``max_top_logprobs``),
    unless ``logprobs=False`` (a server that sends none). A principle judge's prompt ("...
    satisfies this principle: P. Only answer Yes or No.") is answered Yes or No, its first
    token's alternatives spread over "Yes", " Yes", "yes", "No", " No", "no" and filler tokens,
    with logprob(Yes) - logprob(No) = :func:`principle_margin` (longer responses win).

    Reasoning (``reasoning``): the server plays a reasoning model that thinks before it
    answers, unless a request switches thinking off (``chat_template_kwargs.enable_thinking:
    false``, ``reasoning_effort: "none"``, a ``detailed thinking off`` system line, or
    ``/no_think``). ``"tags"`` puts ``think_tokens`` tokens of thinking (they start with
    ``THINK_MARK``) in ``content`` inside ``<think>...</think>`` (a server without a reasoning
    parser); ``"field"`` sends them in ``reasoning_field`` (``reasoning_content`` or
    ``reasoning``), in full replies and in stream deltas, and counts them in
    ``completion_tokens_details.reasoning_tokens`` (in every reply, 0 where none).
    ``think_unclosed`` makes the thinking run past ``max_tokens`` (or ``think_tokens``), so
    the reply ends with ``length`` and no answer. A thinking principle judge's first token is
    ``<think>``.

    ``response_format``: a form named in ``response_formats`` (``json_schema``: OpenAI's;
    ``json_object``: llama-cpp-python's, with ``schema``) makes a rating prompt's reply a JSON
    object ``{"reason", "score"}``; another form is refused with ``refusal_status`` and a
    message naming ``response_format`` (llama-cpp-python refuses ``json_schema`` with a 500).

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
        logprobs: bool = True,
        max_top_logprobs: int = 20,
        response_formats: Sequence[str] = ("text", "json_schema", "json_object"),
        refusal_status: int = 400,
        reasoning: str | None = None,
        reasoning_field: str = "reasoning_content",
        think_tokens: int = 12,
        think_unclosed: bool = False,
    ) -> None:
        if rate <= 0 or ttft < 0 or jitter < 0 or sd_tokens < 0:
            raise ValueError("rate must be positive; ttft, jitter and sd_tokens not negative")
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be at least 1 or None, got {capacity}")
        if min_tokens < 0 or mean_tokens < 0:
            raise ValueError("mean_tokens and min_tokens must not be negative")
        if reject_n and ignore_n:
            raise ValueError("reject_n and ignore_n are exclusive")
        if reasoning not in (None, "tags", "field"):
            raise ValueError(f"reasoning must be None, 'tags' or 'field', got {reasoning!r}")
        if think_tokens < 5:
            raise ValueError("think_tokens must be at least 5 (the marker's length)")
        self.reasoning, self.reasoning_field = reasoning, reasoning_field
        self.think_tokens, self.think_unclosed = think_tokens, think_unclosed
        self.seed, self.ttft, self.rate, self.jitter = seed, ttft, rate, jitter
        self.mean_tokens, self.sd_tokens, self.min_tokens = mean_tokens, sd_tokens, min_tokens
        self.capacity, self.model, self.latency_fn = capacity, model, latency_fn
        self.reject_n, self.ignore_n, self.port = reject_n, ignore_n, port
        self.logprobs, self.max_top_logprobs = logprobs, max_top_logprobs
        self.response_formats = tuple(response_formats)
        self.refusal_status = refusal_status
        self.base_url = ""
        self._ledger = Ledger(capacity, faults)
        self._created = int(time.time())
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        self._closing = False

    # -- observation -------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of chat and pooling requests, in arrival order."""
        return self._ledger.snapshot()

    @property
    def call_count(self) -> int:
        """Chat and pooling requests received (since the last ``reset_stats``)."""
        return len(self._ledger.requests)

    @property
    def in_flight(self) -> int:
        """Open chat and pooling requests, queued ones included."""
        return self._ledger.in_flight

    @property
    def peak_concurrency(self) -> int:
        """The most requests in service (holding a slot) at once."""
        return self._ledger.peak_service

    @property
    def peak_in_flight(self) -> int:
        """The most open requests at once, queued ones included."""
        return self._ledger.peak_in_flight

    @property
    def disconnects(self) -> int:
        """Requests whose client hung up before the reply was complete."""
        return self._ledger.disconnects

    @property
    def busy_s(self) -> float:
        """Seconds of slot time used: the sum over requests of the time each held a slot."""
        return self._ledger.busy_s

    def stats(self, ended_within: float | None = None) -> dict[str, float]:
        """The counters served at ``GET /_sim/stats``; with ``ended_within`` (the query
        ``?ended_within=S``) also ``ended_recently``, the requests answered in the last ``S``
        seconds (a killed client may have had those in hand, not yet stored)."""
        stats: dict[str, float] = {
            "busy_s": round(self._ledger.busy_s, 6),
            "call_count": self.call_count,
            "in_flight": self.in_flight,
            "peak_concurrency": self.peak_concurrency,
            "peak_in_flight": self.peak_in_flight,
            "disconnects": self.disconnects,
        }
        if ended_within is not None:
            since = time.monotonic() - ended_within
            stats["ended_recently"] = sum(
                1 for r in self.requests if r.ended is not None and r.ended >= since
            )
        return stats

    def set_faults(self, faults: Sequence[Fault]) -> None:
        """Replace the faults; their ``first`` counters start again from zero."""
        self._ledger.set_faults(faults)

    def reset_stats(self) -> None:
        """Forget requests, counters, fault counters and the prefix cache, as if freshly started."""
        self._ledger.reset()

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
        # Azure OpenAI's shape: the deployment in the path, ``api-version`` in the query.
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._chat)
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
            self._ledger.open_slots(self.capacity)
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
        within = request.query.get("ended_within")
        try:
            return web.json_response(self.stats(float(within) if within else None))
        except ValueError:
            return web.json_response({"error": "ended_within must be a number"}, status=400)

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
        record, fault = self._ledger.open(request.path, body, headers, text, self.seed)
        record.query = dict(request.query)
        try:
            if not body:
                reply = error_reply(
                    400, "the request body must be a JSON object", "invalid_request_error"
                )
            elif fault is not None and fault.kind != "slow":
                reply = await fault_reply(request, fault, body)
            else:
                if fault is not None:
                    await asyncio.sleep(fault.slow_s)
                reply = await serve(request, record)
            record.status = reply.status
            return reply
        except (asyncio.CancelledError, ConnectionResetError):
            if record.fault != "drop" and not self._closing:
                self._ledger.disconnected(record)
            raise
        finally:
            self._ledger.close(record)

    def _timing(self, body: dict[str, Any], tokens: int) -> tuple[float, float]:
        """Seconds before the first token and between tokens, from the latency model."""
        base_first, base_decode = self.ttft, tokens / self.rate
        total = self.latency_fn(body) if self.latency_fn is not None else None
        if total is None:
            mult = 1.0
            if self.jitter > 0:
                rng = random.Random(f"{self.seed}:jitter:{digest(body)}")
                mult = math.exp(rng.gauss(0.0, self.jitter))
            return base_first * mult, (base_decode * mult / tokens if tokens else 0.0)
        base = base_first + base_decode
        first = total * base_first / base if base > 0 else total
        return first, ((total - first) / tokens if tokens else 0.0)

    # -- chat completions --------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, self._serve_chat)

    async def _serve_chat(
        self, request: web.Request, record: RecordedRequest
    ) -> web.StreamResponse:
        body = record.body
        planned = chat_reply(self, body, self._ledger.prompt_usage)
        if isinstance(planned, web.Response):
            return planned
        record.completion_tokens = planned.completion_tokens
        first, per_token = self._timing(body, planned.longest)
        reply_id = f"chatcmpl-{record.index}-{planned.key:016x}"
        async with self._ledger.slot():
            if body.get("stream"):
                options = body.get("stream_options") or {}
                include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
                chunks = sse_steps(
                    reply_id,
                    self.model,
                    planned.choices,
                    planned.usage if include_usage else None,
                    planned.logprobs,
                    planned.separated,
                )
                return await self._stream(request, chunks, first, per_token)
            await asyncio.sleep(first + per_token * planned.longest)
        reply = chat_completion(
            reply_id,
            self.model,
            planned.choices,
            planned.usage,
            planned.logprobs,
            planned.separated,
        )
        return web.json_response(reply)

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
        texts = pooled_texts(body)
        if texts is None:
            message = "the request needs 'messages' (chat form) or 'input' (prompt form)"
            return error_reply(400, message, "invalid_request_error", "input")
        messages = body.get("messages")
        if isinstance(messages, list) and messages:
            prompt_tokens, _ = self._ledger.prompt_usage(messages)
        else:
            prompt_tokens = sum(len(t.split()) for t in texts)
        scores = reward_scores(self.seed, texts)
        first, _ = self._timing(body, 0)
        async with self._ledger.slot():
            await asyncio.sleep(first)
        reply_id = f"pool-{record.index}-{digest(self.seed, body):016x}"
        return web.json_response(pooling_reply(reply_id, self.model, scores, prompt_tokens))
