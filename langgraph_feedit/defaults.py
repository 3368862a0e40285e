"""The limits every call has unless a role sets its own: one source for the configuration's
defaults and the command line's help (which must not load pydantic to print itself)."""

from __future__ import annotations

__all__ = ["BACKOFF_S", "CALL_TIMEOUT_S", "FIRST_BYTE_TIMEOUT_S", "MAX_CONCURRENCY", "MAX_RETRIES"]

CALL_TIMEOUT_S = 120.0
"""Seconds one request may take in all before it is cancelled and retried."""

FIRST_BYTE_TIMEOUT_S = 60.0
"""Seconds a streamed request may wait for its first chunk (queueing at the server included):
an endpoint that takes the connection and never answers fails this, not the whole-reply
timeout. A plain request's first byte is its whole reply, so only ``timeout`` bounds it."""

MAX_RETRIES = 4
"""Retries after the first attempt, on retryable failures only."""

BACKOFF_S = 0.5
"""The first retry's backoff; it doubles each retry (with jitter, capped at 30 s)."""

MAX_CONCURRENCY = 16
"""Calls in flight to one endpoint at once, shared by every run in the process."""
