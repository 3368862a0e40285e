"""What ``feedit serve`` answers: completions, stream chunks, usage and errors, in OpenAI's shape.

A run's failure is mapped to the status a client of an OpenAI-compatible server expects: the
caller's mistake is a 400, every branch failing on its backends a 502 naming each failing role
and endpoint, and running out of time a 504.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langgraph_feedit.errors import EndpointTimeout, FeeditError, NoCandidateError, UserError
from langgraph_feedit.judges import rank_key
from langgraph_feedit.serve.protocol import APIError
from langgraph_feedit.state import is_candidate

__all__ = [
    "Choice",
    "choices_of",
    "chunk_body",
    "completion_body",
    "failure_error",
    "finish_reason",
    "message_body",
    "sse",
    "sse_comment",
    "usage_body",
]


def usage_body(total: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI's ``usage`` from the trace's ``usage["total"]``: every call of the tree. Thinking
    is part of ``completion_tokens``; ``completion_tokens_details.reasoning_tokens`` is sent
    only where every call's server counted it (a made-up 0 would read as "did not think")."""
    prompt = int(total.get("prompt_tokens", 0))
    completion = int(total.get("completion_tokens", 0))
    body: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": int(total.get("cached_tokens", 0))},
    }
    reported = int(total.get("reasoning_reported", 0))
    if reported and reported >= int(total.get("calls", 0)):
        body["completion_tokens_details"] = {
            "reasoning_tokens": int(total.get("reasoning_tokens", 0))
        }
    return body


Choice = tuple[str, str | None, str | None]
"""One choice of a reply: the answer's text, its ``finish_reason`` and its thinking."""


def finish_reason(node: Mapping[str, Any] | None) -> str | None:
    """The ``finish_reason`` the endpoint gave the candidate a trace node holds (``stop``,
    ``length`` when ``max_tokens`` cut it off...), never one made up: a streamed reply
    without one was never an answer, and a plain reply that had none has none here."""
    return node.get("finish_reason") if node is not None else None


def choices_of(output: Mapping[str, Any], n: int = 1) -> list[Choice]:
    """The reply's choices from a run's output: the selected answer, then (for ``n > 1``) the
    other candidates by judged score, as the graph ranks them (unscored last, ties in tree
    order). Fewer than ``n`` when fewer candidates came through."""
    trace = output["trace"]
    nodes = {node["id"]: node for node in trace["nodes"]}
    selected = trace["selected"]
    chosen = nodes.get(selected)
    out: list[Choice] = [
        (
            str(output["messages"][-1].content),
            finish_reason(chosen),
            chosen.get("reasoning") if chosen else None,
        )
    ]
    if n > 1:
        others = sorted(
            (n for n in trace["nodes"] if n["id"] != selected and is_candidate(n)), key=rank_key
        )
        out += [
            (str(node["text"]), finish_reason(node), node.get("reasoning"))
            for node in others[: n - 1]
        ]
    return out


def message_body(text: str, reasoning: str | None) -> dict[str, Any]:
    """A choice's ``message``: the answer in ``content``, and the thinking before it in
    ``reasoning_content``, as vLLM and DeepSeek send it."""
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if reasoning:
        message["reasoning_content"] = reasoning
    return message


def completion_body(
    *,
    request_id: str,
    created: int,
    model: str,
    choices: Sequence[Choice],
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
                "index": i,
                "message": message_body(text, reasoning),
                "logprobs": None,
                "finish_reason": reason,
            }
            for i, (text, reason, reasoning) in enumerate(choices)
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
    index: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` with one choice; with no ``delta`` its ``choices`` list is
    empty, which OpenAI sends only for the closing usage chunk (clients that loop on
    ``chunk.choices[0]`` break on any other)."""
    choices: list[dict[str, Any]] = []
    if delta is not None:
        choices.append(
            {
                "index": index,
                "delta": dict(delta),
                "logprobs": None,
                "finish_reason": finish_reason,
            }
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


def sse_comment(data: Mapping[str, Any]) -> bytes:
    """An SSE comment (``: ...``): readable on the wire, skipped by every client's parser."""
    text = json.dumps(data, separators=(",", ":"), default=_json, ensure_ascii=True)
    return f": feedit {text}\n\n".encode()


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
