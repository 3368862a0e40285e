"""Trace pages of the runs ``feedit serve`` keeps: ``GET /traces/`` and ``GET /traces/{id}``.

With ``keep_traces=N`` (``--keep-traces N``) the door keeps the trace and conversation of its
last N finished chat completions in memory, under the completion's own ``id`` (the
``chatcmpl-...`` of the response body, or of every chunk of a stream), and serves them as the
pages ``feedit view`` writes. Nothing is kept by default.

Hostile clients: the pages sit behind the door's own authentication (``Authorization: Bearer``
when a client key is set), and an id is 122 random bits (``uuid4``), so a page is reached only
by whoever got its id in a response, or holds the key and lists the index. The pages hold
model text and the caller's messages, escaped, under a Content-Security-Policy that allows no
request and no script but the index's own sorter; the routes only read, and a page costs no
model call.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

# At module level: FastAPI reads the routes' annotations (strings here) from this namespace.
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from langgraph_feedit.serve.guards import authorize
from langgraph_feedit.serve.protocol import APIError
from langgraph_feedit.view import INDEX_POLICY, TRACE_POLICY, batch_row, index_page, trace_page

__all__ = ["TraceKeeper", "add_trace_routes"]


class TraceKeeper:
    """The last ``capacity`` runs' traces and conversations, by completion id."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._runs: OrderedDict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def keep(self, run_id: str, messages: Sequence[Any], trace: Mapping[str, Any]) -> None:
        from langchain_core.messages import convert_to_openai_messages

        conversation = convert_to_openai_messages(list(messages))
        with self._lock:
            self._runs[run_id] = (list(conversation), dict(trace))
            self._runs.move_to_end(run_id)
            while len(self._runs) > self.capacity:
                self._runs.popitem(last=False)

    def get(self, run_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
        with self._lock:
            return self._runs.get(run_id)

    def ids(self) -> list[str]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._runs))


def add_trace_routes(app: FastAPI, keeper: TraceKeeper, key_digest: bytes | None) -> None:
    """Register the two page routes on the door's app, behind its authentication."""

    def html(body: str, policy: str) -> HTMLResponse:
        return HTMLResponse(
            body,
            headers={
                "Content-Security-Policy": policy,
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",
                "X-Content-Type-Options": "nosniff",
            },
        )

    @app.get("/traces/", response_class=HTMLResponse)
    async def trace_index(request: Request) -> HTMLResponse:
        authorize(request, key_digest)
        rows = []
        for run_id in keeper.ids():
            kept = keeper.get(run_id)
            if kept is not None:
                rows.append(batch_row(run_id, {"status": "ok"}, kept[1], f"/traces/{run_id}"))
        return html(index_page(rows, title="feedit serve: kept traces"), INDEX_POLICY)

    @app.get("/traces/{run_id}", response_class=HTMLResponse)
    async def trace_view(request: Request, run_id: str) -> HTMLResponse:
        authorize(request, key_digest)
        kept = keeper.get(run_id)
        if kept is None:
            # Not echoed: the id is the caller's text.
            raise APIError(404, "No kept trace with this id", code="trace_not_found")
        messages, trace = kept
        # Diffing a wide tree's edits takes a while (about a second for 16x4x2): off the loop
        # that serves the chat completions.
        page = await asyncio.to_thread(
            trace_page, trace, messages=messages, title=f"feedit serve: {run_id}", back="/traces/"
        )
        return html(page, TRACE_POLICY)
