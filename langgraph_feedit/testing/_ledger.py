"""What the simulated server has seen: recorded requests, counters, serving slots, prefix cache.

The handlers run on the server's event loop while tests read the counters from their own thread,
so every shared number lives here under one lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langgraph_feedit.testing._faults import Fault, FaultPlan
from langgraph_feedit.testing._replies import cached_prefix, prompt_prefixes


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
    query: dict[str, str] = field(default_factory=dict)
    """The request's query parameters (Azure OpenAI's ``api-version``)."""


class Slots:
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


class Ledger:
    """The server's requests and counters; fields are read freely, changed only under ``lock``."""

    def __init__(self, capacity: int | None, faults: Sequence[Fault]) -> None:
        self.lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self.in_flight = self.in_service = 0
        self.peak_in_flight = self.peak_service = self.disconnects = 0
        self.busy_s = 0.0
        self._plan = FaultPlan(faults)
        self._prefixes: set[int] = set()
        self._slots = Slots(capacity)

    def snapshot(self) -> list[RecordedRequest]:
        with self.lock:
            return list(self.requests)

    def set_faults(self, faults: Sequence[Fault]) -> None:
        with self.lock:
            self._plan = FaultPlan(faults)

    def reset(self) -> None:
        """Forget requests, counters, fault counters and the prefix cache; keep what is open."""
        with self.lock:
            self.requests.clear()
            self._prefixes.clear()
            self._plan.restart()
            self.peak_in_flight, self.peak_service = self.in_flight, self.in_service
            self.disconnects = 0
            self.busy_s = 0.0

    def open_slots(self, capacity: int | None) -> None:
        """Start with all ``capacity`` slots free and nobody queued, as a freshly started server."""
        self._slots = Slots(capacity)

    def open(
        self, path: str, body: dict[str, Any], headers: dict[str, str], text: str, seed: int
    ) -> tuple[RecordedRequest, Fault | None]:
        """Record a request as open, with the fault it gets (none when it has no JSON body)."""
        with self.lock:
            record = RecordedRequest(len(self.requests), path, body, headers, time.monotonic())
            self.requests.append(record)
            # Faults match the body as compact JSON, whatever spacing the client's encoder used
            # (openai's older releases send ``"seed": 1``, newer ones ``"seed":1``).
            canonical = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
            fault = self._plan.pick(seed, record.index, canonical) if body else None
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        record.fault = fault.kind if fault is not None else None
        return record, fault

    def disconnected(self, record: RecordedRequest) -> None:
        record.disconnected = True
        with self.lock:
            self.disconnects += 1

    def close(self, record: RecordedRequest) -> None:
        record.ended = time.monotonic()
        with self.lock:
            self.in_flight -= 1

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a serving slot: queue (FIFO) while all are busy, count the request as in service."""
        await self._slots.acquire()
        with self.lock:
            self.in_service += 1
            self.peak_service = max(self.peak_service, self.in_service)
        held = time.monotonic()
        try:
            yield
        finally:
            with self.lock:
                self.in_service -= 1
                self.busy_s += time.monotonic() - held
            self._slots.release()

    def prompt_usage(self, messages: list[Any]) -> tuple[int, int]:
        """Prompt tokens, and how many leading words an earlier request already had (cached)."""
        prompt_tokens, chain = prompt_prefixes(messages)
        with self.lock:
            cached = cached_prefix(chain, self._prefixes)
        return prompt_tokens, cached
