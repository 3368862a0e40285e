"""The shapes of the OpenAI-compatible chat API: what a request says, and what a reply means.

Pure data and parsing, no I/O: :class:`ChatRequest` (one call's settings, and the JSON body it
is sent as), the reply's choices, first-token logprobs and usage, a streamed reply's events,
the ``response_format`` forms, and vLLM's pooling reply. :mod:`langgraph_feedit.endpoints`
sends them; a server's odd shapes are read leniently here (a missing field is absent, not an
error), and only a reply with nothing to use in it is the endpoint's to refuse.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langgraph_feedit.usage import Usage

__all__ = [
    "ChatRequest",
    "ChatResult",
    "Choices",
    "JsonMode",
    "TokenLogprobs",
    "pooled_reward",
    "read_choices",
    "read_stream",
    "refuses_response_format",
    "response_format",
    "usage_of",
]


@dataclass(frozen=True, slots=True)
class TokenLogprobs:
    """The first generated token of a choice: its text and logprob, and the server's
    ``top_logprobs`` alternatives at that position (as ``(token, logprob)``, as sent)."""

    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)


JsonMode = Literal["json_schema", "json_object"]
"""How a JSON schema is sent: OpenAI's ``{"type": "json_schema", "json_schema": {...}}``
(OpenAI, vLLM, llama.cpp's own server), or ``{"type": "json_object", "schema": {...}}``
(llama-cpp-python's server, which refuses the first form)."""


@dataclass(frozen=True, slots=True)
class ChatResult:
    """Completions of one conversation and what they cost."""

    texts: list[str]
    usage: Usage
    model: str
    finish_reasons: list[str | None] = field(default_factory=list)
    logprobs: list[TokenLogprobs | None] = field(default_factory=list)
    """Per choice, the first token's logprobs when they were asked for and the server sent
    them (``None`` where it sent none)."""
    json_mode: JsonMode | None = None
    """The ``response_format`` form the reply was constrained by, ``None`` when none was
    sent (not asked for, or refused by this endpoint)."""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat call as the caller asked for it: ``n`` samples of ``messages`` from ``model``.

    ``params`` holds the sampling fields as sent (``temperature``, ``max_tokens``, ``logprobs``,
    ``response_format``...); ``extra_body`` is merged last, over every field, as the SDK
    merges its ``extra_body``.
    """

    messages: Sequence[Mapping[str, Any]]
    model: str
    role: str | None = None
    n: int = 1
    use_n: bool = False
    seed: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    extra_body: Mapping[str, Any] | None = None
    on_token: Callable[[str], Awaitable[None]] | None = None

    @property
    def max_tokens(self) -> int | None:
        value = self.params.get("max_tokens")
        return int(value) if value is not None else None

    @property
    def asks_json(self) -> bool:
        return "response_format" in self.params

    @property
    def asks_logprobs(self) -> bool:
        return bool(self.params.get("logprobs"))

    def formatted(self, mode: JsonMode, json_schema: Mapping[str, Any]) -> ChatRequest:
        """The same request constrained by ``json_schema`` in the ``mode`` form."""
        return dataclasses.replace(
            self, params={**self.params, "response_format": response_format(mode, json_schema)}
        )

    def body(self, *, n: int = 1, seed: int | None = None, stream: bool = False) -> dict[str, Any]:
        """The JSON body of one request for ``n`` choices with ``seed``."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(m) for m in self.messages],
            **self.params,
        }
        if n > 1:
            body["n"] = n
        if seed is not None:
            body["seed"] = seed
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        if self.extra_body:
            body.update(self.extra_body)
        return body


@dataclass(slots=True)
class Choices:
    """What one reply's choices say, in the order of their ``index``."""

    texts: list[str] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)
    logprobs: list[TokenLogprobs | None] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)

    def extend(self, other: Choices, limit: int | None = None) -> None:
        self.texts.extend(other.texts[:limit])
        self.reasons.extend(other.reasons[:limit])
        self.logprobs.extend(other.logprobs[:limit])
        self.usage = self.usage + other.usage


def read_choices(reply: Any) -> Choices | None:
    """The choices of a ``chat.completion`` reply, or ``None`` when it has none to read."""
    try:
        ordered = sorted(reply["choices"], key=lambda c: int(c.get("index") or 0))
        choices = Choices(
            texts=[str((c.get("message") or {}).get("content") or "") for c in ordered],
            reasons=[c.get("finish_reason") for c in ordered],
            logprobs=[first_token(c.get("logprobs")) for c in ordered],
            usage=usage_of(reply.get("usage")),
        )
    except (KeyError, TypeError, AttributeError, ValueError):
        return None
    return choices if choices.texts else None


async def read_stream(
    events: AsyncIterable[Mapping[str, Any]],
    model: str,
    on_token: Callable[[str], Awaitable[None]],
) -> ChatResult:
    """A streamed reply's ``chat.completion.chunk`` events gathered into one result, each
    piece of text handed to ``on_token`` as it arrives."""
    pieces: list[str] = []
    reason: str | None = None
    usage: Usage | None = None
    first: TokenLogprobs | None = None
    async for chunk in events:
        if chunk.get("usage") is not None:
            usage = usage_of(chunk["usage"])
        for choice in chunk.get("choices") or ():
            if first is None:
                first = first_token(choice.get("logprobs"))
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                pieces.append(piece)
                await on_token(piece)
            if choice.get("finish_reason"):
                reason = choice["finish_reason"]
    return ChatResult(
        texts=["".join(pieces)],
        usage=usage or Usage(calls=1),
        model=model,
        finish_reasons=[reason],
        logprobs=[first],
    )


def first_token(logprobs: Any) -> TokenLogprobs | None:
    """The first token of a choice's ``logprobs`` (``content[0]``), or ``None``."""
    try:
        content = logprobs.get("content") if logprobs else None
        if not content:
            return None
        head = content[0]
        top = [(str(t["token"]), float(t["logprob"])) for t in head.get("top_logprobs") or []]
        return TokenLogprobs(str(head["token"]), float(head["logprob"]), top)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None  # a server's odd shape is no logprobs, not a failed call


def usage_of(usage: Any) -> Usage:
    """One call's usage from a reply's ``usage`` object (absent: the call, no tokens)."""
    if not isinstance(usage, dict):
        return Usage(calls=1)
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    return Usage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cached_tokens=int(cached or 0),
        calls=1,
    )


def response_format(mode: JsonMode, json_schema: Mapping[str, Any]) -> dict[str, Any]:
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": dict(json_schema)}
    return {"type": "json_object", "schema": json_schema["schema"]}


def refuses_response_format(status: int | None, body: str | None) -> bool:
    """A server's refusal of the ``response_format`` it was sent: a 400, 422 or 500 (what
    llama-cpp-python answers a form it does not know) whose body names ``response_format``."""
    return status in (400, 422, 500) and "response_format" in (body or "")


def pooled_reward(reply: Any) -> tuple[float, Usage]:
    """The reward in a vLLM pooling reply: the last element of ``data[0].data`` (a reward
    model pools one value per sequence; a token-level output is read at its last position).

    Raises:
        KeyError, IndexError, TypeError, ValueError: the reply has no reward where one goes.
    """
    value: Any = reply["data"][0]["data"]
    while isinstance(value, list):
        value = value[-1]
    prompt_tokens = int((reply.get("usage") or {}).get("prompt_tokens", 0))
    return float(value), Usage(prompt_tokens=prompt_tokens, calls=1)
