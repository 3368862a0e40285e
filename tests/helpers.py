"""Shared helpers for tests: configurations pointing every role at a simulated server."""

from __future__ import annotations

from typing import Any

from langgraph_feedit import FeeditConfig
from langgraph_feedit.config import deep_merge
from langgraph_feedit.testing import SimServer


def sim_config(base_url: str, **overrides: Any) -> FeeditConfig:
    """Every role on ``base_url`` with fast retries; ``overrides`` is a nested mapping."""
    data: dict[str, Any] = {
        "roles": {
            "default": {
                "base_url": base_url,
                "model": "sim-model",
                "max_retries": 2,
                "backoff": 0.01,
                "timeout": 10.0,
                "max_concurrency": 64,
            }
        }
    }
    return FeeditConfig.load(env={}, overrides=deep_merge(data, overrides))


def in_flight_at(server: SimServer, moment: float, grace: float = 1.0) -> int:
    """Calls in flight when a client was killed at ``moment``: those the kill cut off, and
    those whose reply had been sent in the ``grace`` seconds before it (the client may have had
    it on the wire, or in hand but not yet written to its store)."""
    return sum(
        1
        for r in server.requests
        if r.disconnected or (r.ended is not None and moment - grace <= r.ended <= moment)
    )
