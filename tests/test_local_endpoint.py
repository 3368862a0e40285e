"""A single-slot local server: our queue, timeouts that count decoding only, no retry storms.

The simulated server stands in for llama.cpp's (one slot, requests queue in arrival order), so
these run without the embedded extra; ``test_embedded_e2e.py`` repeats the point on the real one.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from langgraph_feedit import EndpointTimeout
from langgraph_feedit.endpoints import Endpoint
from langgraph_feedit.testing import Fault, SimServer

MESSAGES = [{"role": "user", "content": "Write a long story."}]


def single_slot(server: SimServer, **kw: object) -> Endpoint:
    options: dict[str, object] = {"api_key": "sk-none", "backoff": 0.01, "max_retries": 0}
    options.update(kw)
    return Endpoint(server.base_url, **options)  # type: ignore[arg-type]


async def test_waiting_in_our_queue_does_not_count_against_the_timeout() -> None:
    # Each call decodes for 0.3 s; six of them take 1.8 s, three times the 0.6 s timeout.
    with SimServer(seed=1, ttft=0.3, capacity=1) as server:
        ep = single_slot(server, max_concurrency=1, timeout=0.6)
        started = time.monotonic()
        results = await asyncio.gather(*(ep.chat(MESSAGES, model="m") for _ in range(6)))
        elapsed = time.monotonic() - started
        assert all(r.texts[0] for r in results)
        assert server.call_count == 6 and server.peak_concurrency == 1
        assert elapsed >= 6 * 0.3 > ep.timeout


async def test_the_same_calls_time_out_when_they_queue_inside_the_server() -> None:
    # The defect: every call sent at once waits its turn at the server, inside its timeout.
    with SimServer(seed=1, ttft=0.3, capacity=1) as server:
        ep = single_slot(server, max_concurrency=6, timeout=0.6)
        results = await asyncio.gather(
            *(ep.chat(MESSAGES, model="m") for _ in range(6)), return_exceptions=True
        )
        assert any(isinstance(r, EndpointTimeout) for r in results)


async def test_timeout_scales_with_max_tokens_at_the_slowest_rate() -> None:
    # 40 tokens at 50 tokens/s decode for 0.8 s: past the 0.5 s floor, within 0.5 + 40 / 20.
    with SimServer(seed=2, rate=50.0, mean_tokens=40, min_tokens=40, capacity=1) as server:
        ep = single_slot(server, max_concurrency=1, timeout=0.5, min_tokens_per_second=20.0)
        assert ep.request_timeout(40) == pytest.approx(2.5)
        assert ep.request_timeout(40, n=2) == pytest.approx(4.5)
        assert ep.request_timeout(None) == 0.5
        result = await ep.chat(MESSAGES, model="m", max_tokens=40)
        assert result.usage.completion_tokens == 40
        fixed = single_slot(server, max_concurrency=1, timeout=0.5)
        with pytest.raises(EndpointTimeout, match=r"within 0\.5 s"):
            await fixed.chat(MESSAGES, model="m", max_tokens=40)


async def test_a_local_server_timeout_is_not_retried() -> None:
    with SimServer(seed=3, capacity=1) as server:
        server.set_faults([Fault("slow", rate=1.0, slow_s=3.0)])
        ep = single_slot(server, max_concurrency=1, timeout=0.3, max_retries=4)
        ep.retry_timeouts = False
        with pytest.raises(EndpointTimeout, match=r"within 0\.3 s after 1 attempt\(s\)"):
            await ep.chat(MESSAGES, model="m")
        assert server.call_count == 1
        # other transient failures are still retried
        server.set_faults([Fault("500", first=2)])
        result = await ep.chat(MESSAGES, model="m")
        assert result.texts[0] and server.call_count == 4
