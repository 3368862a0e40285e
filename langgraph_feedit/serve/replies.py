"""What ``feedit serve`` answers: completions, stream chunks, usage and errors, in OpenAI's shape.

A run's failure is mapped to the status a client of an OpenAI-compatible server expects: the
caller's mistake is a 400, every branch failing on its backends a 502 naming each failing role
and endpoint, and running out of time a 504.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from langgraph_feedit.errors import EndpointTimeout, FeeditError, NoCandidateError, UserError
from langgraph_feedit.serve.protocol import APIError

__all__ = ["chunk_body", "completion_body", "failure_error", "sse", "usage_body"]


def usage_body(total: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI's ``usage`` from the trace's ``usage["total"]``: every call of the tree."""
    prompt = int(total.get("prompt_tokens", 0))
    completion = int(total.get("completion_tokens", 0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": int(total.get("cached_tokens", 0))},
    }


def completion_body(
    *,
    request_id: str,
    created: int,
    model: str,
    answer: str,
    usage: Mapping[str, Any],
    trace: Mapping[str, Any] | None,
    fingerprint: str,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage_body(usage),
    }
    if trace is not None:
        body["feedit_trace"] = trace
    return body


def chunk_body(
    *,
    request_id: str,
    created: int,
    model: str,
    fingerprint: str,
    delta: Mapping[str, Any] | None = None,
    finish_reason: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``; with no ``delta`` its ``choices`` list is empty (a progress or
    usage chunk, which OpenAI's clients pass through without touching the answer)."""
    choices: list[dict[str, Any]] = []
    if delta is not None:
        choices.append(
            {"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish_reason}
        )
    body: dict[str, Any] = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": choices,
    }
    body.update(extra)
    return body


def sse(data: Mapping[str, Any] | str) -> bytes:
    """One Server-Sent Event (``data: ...`` and a blank line)."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), default=_json)
    return f"data: {text}\n\n".encode()


def _json(value: Any) -> Any:
    return str(value)


# -- failures -----------------------------------------------------------------------------------


def failure_error(
    exc: BaseException, *, deadline_s: float | None, elapsed: float
) -> APIError | None:
    """The API error for a run that raised ``exc``; ``None`` for a bug (answered as a 500).

    Every branch failing is the backends' fault (502, naming each failing role and endpoint), or a
    timeout (504) when the run's deadline passed or every branch timed out.
    """
    if isinstance(exc, NoCandidateError):
        timed_out = exc.timed_out or (deadline_s is not None and elapsed >= deadline_s)
        if timed_out:
            return APIError(504, _summary(exc), type="server_error", code="timeout")
        return APIError(502, _summary(exc), type="server_error", code="backend_error")
    if isinstance(exc, EndpointTimeout):
        return APIError(504, str(exc), type="server_error", code="timeout")
    if isinstance(exc, UserError):
        return APIError(400, str(exc))
    if isinstance(exc, FeeditError):
        return APIError(502, str(exc), type="server_error", code="backend_error")
    return None


def _summary(exc: NoCandidateError) -> str:
    """One line per distinct failure, with the nodes it hit: a wide tree against a dead endpoint
    fails the same way in every branch, and the reader needs the reason once."""
    nodes: dict[str, list[str]] = {}
    for line in exc.errors:
        node, _, reason = line.partition(": ")
        nodes.setdefault(reason or line, []).append(node)
    head = str(exc).splitlines()[0]
    if not nodes:
        return head
    parts = []
    for reason, ids in list(nodes.items())[:5]:
        shown = ", ".join(ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
        parts.append(f"{reason} [{shown}]")
    return f"{head}: " + "; ".join(parts)
