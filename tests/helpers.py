"""Shared helpers for tests: configurations pointing every role at a simulated server."""

from __future__ import annotations

from typing import Any

from langgraph_feedit import FeeditConfig
from langgraph_feedit.config import deep_merge


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
