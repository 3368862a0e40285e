"""Usage: the tokens and requests that calls cost, one type that adds itself up.

:class:`Usage` is what an endpoint returns with each result and what a run's budget charges;
:class:`UsageDict` is the same numbers as they are stored in state, checkpoints and the trace
(plain JSON, so LangGraph's serializer keeps them without a custom type).

Thinking is part of ``completion_tokens`` (as every OpenAI-compatible server counts it), so a
budget charges it. ``reasoning_tokens`` is the part of them the servers said was thinking, and
``reasoning_reported`` how many calls' servers said so: a server that does not count thinking
apart (a reasoning model behind a server without a reasoning parser) reports nothing, and the
count is then unknown, not zero (:meth:`Usage.reasoning_known`).

Example:
    >>> total = Usage(prompt_tokens=10, calls=1) + Usage.from_dict({"completion_tokens": 5})
    >>> total.total_tokens, total.as_dict()["calls"]
    (15, 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NotRequired

from typing_extensions import TypedDict

__all__ = ["Usage", "UsageDict", "empty_usage"]


class UsageDict(TypedDict):
    """A :class:`Usage` as it is stored (``Usage.as_dict``, ``Usage.from_dict``)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    calls: int
    # Absent from traces written before thinking was counted apart.
    reasoning_tokens: NotRequired[int]
    reasoning_reported: NotRequired[int]


def empty_usage() -> UsageDict:
    return {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cached_tokens": 0,
        "calls": 0,
        "reasoning_tokens": 0,
        "reasoning_reported": 0,
    }


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one or more calls used, as the server reported them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    """Every generated token, thinking included."""
    cached_tokens: int = 0
    """Prompt tokens served from the server's prefix cache (0 where it reports none)."""
    calls: int = 0
    """HTTP requests that returned a result (retries of failed attempts are not counted)."""
    reasoning_tokens: int = 0
    """The part of ``completion_tokens`` that was thinking, where the server counted it
    (``completion_tokens_details.reasoning_tokens``)."""
    reasoning_reported: int = 0
    """Calls whose server counted thinking tokens apart (0: the count is not available)."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def reasoning_known(self) -> bool:
        """Whether every call's server counted its thinking tokens apart."""
        return self.reasoning_reported >= self.calls

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
            self.calls + other.calls,
            self.reasoning_tokens + other.reasoning_tokens,
            self.reasoning_reported + other.reasoning_reported,
        )

    def as_dict(self) -> UsageDict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "calls": self.calls,
            "reasoning_tokens": self.reasoning_tokens,
            "reasoning_reported": self.reasoning_reported,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Usage:
        if not data:
            return cls()
        return cls(
            int(data.get("prompt_tokens", 0)),
            int(data.get("completion_tokens", 0)),
            int(data.get("cached_tokens", 0)),
            int(data.get("calls", 0)),
            int(data.get("reasoning_tokens", 0)),
            int(data.get("reasoning_reported", 0)),
        )
