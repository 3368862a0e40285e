"""The ``feedit serve`` app: OpenAI's chat-completions API in front of the feedit graph.

One compiled graph per preset is built when the app is, from the server's configuration, and
shared by every request; a request picks one by its ``model`` and lays its own settings over it
through the graph's per-run ``context``. Nothing blocks the event loop: the graph and every
backend call are async, so one process serves many requests at once.

A client that goes away cancels its tree. A plain request races the run against the
connection's ``http.disconnect``; a streaming one is cancelled with its response (the server
reports the disconnect), and a keep-alive comment every ``keepalive_s`` seconds makes servers
that only notice a lost client on write find out too. Either way the cancellation reaches every
call in flight, whose HTTP requests close.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from langchain_core.messages import AIMessageChunk
from langgraph.graph.state import CompiledStateGraph
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from langgraph_feedit import __version__
from langgraph_feedit.config import PRESETS, FeeditConfig, resolve_config
from langgraph_feedit.endpoints import aclose_endpoints
from langgraph_feedit.errors import ConfigError
from langgraph_feedit.graph import create_feedit_graph
from langgraph_feedit.overrides import check_allow_patterns
from langgraph_feedit.serve.guards import authorize, key_digest, read_body, require_json
from langgraph_feedit.serve.pages import TraceKeeper, add_trace_routes
from langgraph_feedit.serve.protocol import APIError, DoorRequest, parse_chat_request
from langgraph_feedit.serve.replies import (
    choices_of,
    chunk_body,
    completion_body,
    failure_error,
    sse,
    sse_comment,
    usage_body,
)

__all__ = ["build_app"]

log = logging.getLogger("langgraph_feedit.serve")

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_CLIENT_GONE = 499  # nginx's "client closed request": logged, never seen by the client


@dataclass(frozen=True)
class _Server:
    """What every request shares: the configuration, the graphs and the limits."""

    config: FeeditConfig
    graphs: Mapping[str, CompiledStateGraph[Any, Any, Any, Any]]
    key_digest: bytes | None
    max_body_bytes: int
    max_fanout: int
    keepalive_s: float
    allow_overrides: tuple[str, ...]
    created: int
    fingerprint: str
    kept: TraceKeeper | None = None


def build_app(
    config: FeeditConfig,
    *,
    api_key_env: str | None = None,
    max_body_bytes: int = 1_000_000,
    max_fanout: int = 256,
    keepalive_s: float = 15.0,
    allow_overrides: Collection[str] = (),
    env: Mapping[str, str] | None = None,
    keep_traces: int = 0,
) -> FastAPI:
    """An OpenAI-compatible app serving every preset of ``config`` as a model.

    Routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /v1/models/{model}`` and
    ``GET /health`` (no key needed). The request format is described in
    :mod:`langgraph_feedit.serve.protocol`; in short, ``model`` names a preset, ``temperature``,
    ``top_p`` and ``seed`` apply to the draft role, ``max_tokens`` and ``stop`` to drafts and
    edits (every call that produces a candidate), and
    ``extra_body={"feedit": {...}}`` sets width, depth, budget and role sampling per request.

    Args:
        config: the server's configuration: endpoints, keys and limits of every role.
        api_key_env: NAME of an environment variable holding the key clients must send as
            ``Authorization: Bearer <key>``; ``None`` serves without authentication.
        max_body_bytes: larger request bodies are refused with 413.
        max_fanout: requests whose tree could hold more drafts, critiques and edits than this
            are refused with 400.
        keepalive_s: seconds of silence after which a stream sends an SSE comment.
        allow_overrides: per-request keys opened beyond the default policy, as dotted
            patterns (``roles.*.model``); see
            :func:`langgraph_feedit.overrides.check_untrusted_overrides`. Opening
            ``roles.*.base_url`` together with ``roles.*.api_key_env`` lets any client have
            the server send any of its environment variables to a host of its choice.
        env: where to read ``api_key_env`` (default ``os.environ``).
        keep_traces: keep the last N runs' traces in memory and serve their pages at
            ``GET /traces/`` and ``GET /traces/{id}`` (the completion's ``id``), behind the
            same key; see :mod:`langgraph_feedit.serve.pages`. 0 keeps none.

    Raises:
        ConfigError: a bad configuration, ``api_key_env`` names an unset variable, or an
            ``allow_overrides`` entry matches no setting.

    Example:
        ```python
        import uvicorn
        from langgraph_feedit import FeeditConfig
        from langgraph_feedit.serve import build_app

        app = build_app(FeeditConfig.load("feedit.toml"), api_key_env="FEEDIT_SERVE_KEY")
        uvicorn.run(app, host="127.0.0.1", port=8080)
        ```
    """
    if max_body_bytes < 1 or max_fanout < 1 or keepalive_s <= 0:
        raise ConfigError("max_body_bytes, max_fanout and keepalive_s must be positive")
    if keep_traces < 0:
        raise ConfigError("keep_traces must be 0 or more", key="keep_traces")
    check_allow_patterns(allow_overrides)
    server = _Server(
        config=config,
        graphs={p: _preset_graph(config, p) for p in PRESETS},
        key_digest=key_digest(api_key_env, os.environ if env is None else env),
        max_body_bytes=max_body_bytes,
        max_fanout=max_fanout,
        keepalive_s=keepalive_s,
        allow_overrides=tuple(allow_overrides),
        created=int(time.time()),
        fingerprint=f"feedit-{__version__}",
        kept=TraceKeeper(keep_traces) if keep_traces else None,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # Backend clients belong to this loop; close their connections with it.
        await aclose_endpoints()

    app = FastAPI(
        title="feedit",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> Response:
        return _error_response(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            message = f"Unknown request URL: {request.method} {request.url.path}"
        else:
            message = str(exc.detail)
        return _error_response(APIError(exc.status_code, message))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error_response(
            APIError(500, "internal error", type="server_error", code="internal_error")
        )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        authorize(request, server.key_digest)
        return {"object": "list", "data": [_model_card(p, server) for p in server.graphs]}

    @app.get("/v1/models/{model}")
    async def get_model(request: Request, model: str) -> dict[str, Any]:
        authorize(request, server.key_digest)
        if model not in server.graphs:
            raise APIError(
                404, f"The model {model!r} does not exist", param="model", code="model_not_found"
            )
        return _model_card(model, server)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Response:
        authorize(request, server.key_digest)
        require_json(request)
        try:
            raw = await read_body(request, server.max_body_bytes)
        except ClientDisconnect:
            return Response(status_code=_CLIENT_GONE)  # gone before its request was whole
        chat = parse_chat_request(
            raw,
            config=server.config,
            presets=list(server.graphs),
            max_fanout=server.max_fanout,
            allow=server.allow_overrides,
        )
        if chat.stream:
            return StreamingResponse(
                _stream(server, chat),
                media_type="text/event-stream",
                headers=_SSE_HEADERS,
            )
        return await _complete(server, chat, request)

    if server.kept is not None:
        add_trace_routes(app, server.kept, server.key_digest)
    return app


def _preset_graph(config: FeeditConfig, preset: str) -> Any:
    """The graph a model name stands for: the model name is the client's per-run choice of
    preset, so it is resolved as one (``resolve_config``): ``single`` is one draft even when
    the server's file sets ``width.drafts``; widths the preset leaves open (the drafts of
    ``feedback-edit``) still come from the file, and each request may change them."""
    resolved = resolve_config(config, overrides={"preset": preset})
    return create_feedit_graph(resolved, preset=preset).compile()


def _error_response(exc: APIError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def _model_card(preset: str, server: _Server) -> dict[str, Any]:
    return {"id": preset, "object": "model", "created": server.created, "owned_by": "feedit"}


# -- running the graph ----------------------------------------------------------------------


def _failure(exc: BaseException, chat: DoorRequest, started: float) -> APIError:
    error = failure_error(exc, deadline_s=chat.deadline_s, elapsed=time.monotonic() - started)
    if error is None:
        log.error("run failed unexpectedly (preset %s)", chat.preset, exc_info=exc)
        error = APIError(500, "internal error", type="server_error", code="internal_error")
    else:
        log.warning("run failed (preset %s): %d %s", chat.preset, error.status, error.message)
    return error


async def _disconnected(request: Request) -> None:
    """Return once the client hangs up. The body has been read, so the next message the server
    delivers is ``http.disconnect``; awaiting it costs nothing while the client stays."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _complete(server: _Server, chat: DoorRequest, request: Request) -> Response:
    started = time.monotonic()
    graph = server.graphs[chat.preset]
    run = asyncio.ensure_future(graph.ainvoke({"messages": chat.messages}, context=chat.context))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({run, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await _cancel(gone)
        await _cancel(run)
    if run.cancelled():
        log.info(
            "client left; run cancelled (preset %s) after %.3f s", chat.preset, _since(started)
        )
        return Response(status_code=_CLIENT_GONE)
    exc = run.exception()
    if exc is not None:
        return _error_response(_failure(exc, chat, started))
    out = run.result()
    trace = out["trace"]
    request_id = _request_id()
    if server.kept is not None:
        server.kept.keep(request_id, chat.messages, trace)
    body = completion_body(
        request_id=request_id,
        created=int(time.time()),
        model=chat.preset,
        choices=choices_of(out, chat.n),
        usage=trace["usage"]["total"],
        trace=trace if chat.trace else None,
        fingerprint=server.fingerprint,
    )
    log.info(
        "chat preset=%s calls=%d wall=%.3fs",
        chat.preset,
        trace["usage"]["total"]["calls"],
        _since(started),
    )
    return JSONResponse(body)


async def _stream(server: _Server, chat: DoorRequest) -> AsyncIterator[bytes]:
    """The SSE body: role chunks, progress, the answers, their endings, usage, ``[DONE]``.

    Every ``data:`` chunk but the closing usage chunk (as OpenAI sends it) holds a choice, so
    the loop OpenAI's examples teach (``chunk.choices[0].delta.content``) never meets an empty
    list. Progress goes out as SSE comments, which every client skips, unless the request asked
    for it as chunks (``"progress": true``: an empty delta and a ``feedit`` field) or for none.
    A failure after the headers went out is an ``error`` event, which OpenAI's clients raise as
    an ``APIError``.
    """
    started = time.monotonic()
    head: dict[str, Any] = {
        "request_id": _request_id(),
        "created": int(time.time()),
        "model": chat.preset,
        "fingerprint": server.fingerprint,
    }
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    # The run starts before the first chunk is written, so the two overlap.
    pump = asyncio.create_task(_pump(server.graphs[chat.preset], chat, queue))
    sent: list[str] = []  # answer tokens already passed on
    thought: list[str] = []  # thinking already passed on
    try:
        yield b"".join(
            sse(chunk_body(**head, delta={"role": "assistant", "content": ""}, index=i))
            for i in range(chat.n)
        )
        while True:
            try:
                async with asyncio.timeout(server.keepalive_s):
                    items = [await queue.get()]
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            # Whatever else is waiting goes out in the same write: under load, events pile up
            # while the loop serves other requests, and one send per event would cost more.
            while not queue.empty():
                items.append(queue.get_nowait())
            out = bytearray()
            for kind, item in items:
                if kind == "token":
                    sent.append(item)
                    out += sse(chunk_body(**head, delta={"content": item}))
                elif kind == "reasoning":
                    thought.append(item)
                    out += sse(chunk_body(**head, delta={"reasoning_content": item}))
                elif kind == "progress":
                    if chat.progress:
                        out += sse(chunk_body(**head, delta={}, feedit=item))
                    else:
                        out += sse_comment(item)
                elif kind == "error":
                    yield bytes(out + sse(_failure(item, chat, started).body()))
                    return
                else:
                    if server.kept is not None:
                        server.kept.keep(head["request_id"], chat.messages, item["trace"])
                    yield bytes(out + _ending(head, chat, item, "".join(sent), bool(thought)))
                    log.info(
                        "chat preset=%s stream calls=%d wall=%.3fs",
                        chat.preset,
                        item["trace"]["usage"]["total"]["calls"],
                        _since(started),
                    )
                    return
            yield bytes(out)
    finally:
        # Reached on success, on failure and when the response is cancelled or closed because
        # the client left: cancelling the pump cancels the graph and every call in flight.
        if not pump.done():
            log.info("stream ended early; run cancelled (preset %s)", chat.preset)
        await _cancel(pump)


def _ending(
    head: Mapping[str, Any],
    chat: DoorRequest,
    output: Mapping[str, Any],
    sent: str = "",
    streamed: bool = False,
) -> bytes:
    """Each answer's thinking (unless the first's was streamed as it came) as a
    ``reasoning_content`` chunk, the answer as a content chunk (what of it was not streamed
    already) and its finish chunk, usage if asked for, ``[DONE]``."""
    trace = output["trace"]
    parts = []
    for i, (text, reason, reasoning) in enumerate(choices_of(output, chat.n)):
        if reasoning and not (i == 0 and streamed):
            delta = {"reasoning_content": reasoning}
            parts.append(sse(chunk_body(**head, delta=delta, index=i)))
        rest = text
        if i == 0 and sent:
            if text.startswith(sent):
                rest = text[len(sent) :]
            else:
                # A call retried after some of its tokens went out streams again from the
                # start; what the client holds cannot be taken back.
                log.warning("streamed tokens differ from the answer (a retried call?)")
                rest = ""
        if rest:
            parts.append(sse(chunk_body(**head, delta={"content": rest}, index=i)))
        extra = {"feedit_trace": trace} if chat.trace and i == 0 else {}
        parts.append(sse(chunk_body(**head, delta={}, finish_reason=reason, index=i, **extra)))
    if chat.include_usage:
        parts.append(sse(chunk_body(**head, usage=usage_body(trace["usage"]["total"]))))
    parts.append(sse("[DONE]"))
    return b"".join(parts)


async def _pump(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    chat: DoorRequest,
    queue: asyncio.Queue[tuple[str, Any]],
) -> None:
    """Run the graph, putting its progress events, the draft's tokens when they are the answer
    (:attr:`DoorRequest.passthrough`), and then its output (or error) on ``queue``."""
    try:
        final: Any = None
        modes = ["values"]
        if chat.progress is not False:
            modes.append("custom")
        if chat.passthrough:
            # Every model call is a chat-model run; "messages" hands on its tokens as the
            # endpoint streams them, tagged with the tree node they belong to.
            modes.append("messages")
        if modes == ["values"]:
            final = await graph.ainvoke({"messages": chat.messages}, context=chat.context)
        else:
            stream = graph.astream(
                {"messages": chat.messages},
                context=chat.context,
                stream_mode=modes,  # type: ignore[arg-type]
                subgraphs=True,
            )
            async for item in stream:
                namespace, mode, data = cast(tuple[tuple[str, ...], str, Any], item)
                if mode == "custom":
                    if isinstance(data, dict) and isinstance(data.get("feedit"), dict):
                        queue.put_nowait(("progress", data["feedit"]))
                elif mode == "messages":
                    piece, meta = data
                    if (
                        isinstance(piece, AIMessageChunk)
                        and meta.get("feedit_id") == "d0"
                        and meta.get("feedit_role") == "draft"
                        and isinstance(piece.content, str)
                    ):
                        # Thinking comes as LangChain's chat models send it, apart from
                        # the text (see ``tracing``).
                        thought = piece.additional_kwargs.get("reasoning_content")
                        if thought:
                            queue.put_nowait(("reasoning", thought))
                        if piece.content:
                            queue.put_nowait(("token", piece.content))
                elif not namespace:
                    final = data
        queue.put_nowait(("done", final))
    except Exception as exc:
        queue.put_nowait(("error", exc))


_unwinding: set[asyncio.Task[Any]] = set()


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` once and wait for it to unwind, so its backend requests are closed.

    Cancelled exactly once: Starlette runs a streaming response in an anyio cancel scope, which
    cancels its task again at every await, and passing each repeat on (as awaiting the task or
    ``gather`` would) interrupts the graph's own clean-up and leaves its calls open. Should the
    wait itself be cancelled, the task finishes unwinding on its own.
    """
    if task.done():
        return
    task.cancel()
    _unwinding.add(task)
    task.add_done_callback(_unwinding.discard)
    await asyncio.wait({task})


def _request_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _since(started: float) -> float:
    return time.monotonic() - started
