"""The shapes of the OpenAI-compatible chat API: what a request says, and what a reply means.

Pure data and parsing, no I/O: :class:`ChatRequest` (one call's settings, and the JSON body it
is sent as), the reply's choices, first-token logprobs and usage, a streamed reply's events,
the ``response_format`` forms, and vLLM's pooling reply. :mod:`langgraph_feedit.endpoints`
sends them; a server's odd shapes are read leniently here (a missing field is absent, not an
error), and only a reply with nothing to use in it is the endpoint's to refuse.

Every reply is split here, once, into its thinking and its answer, by
:mod:`langgraph_feedit.thinking` (:func:`split_reply`, and :class:`ReasoningSplitter` for a
stream's deltas; re-exported here). Nothing above this module sees raw text:
:class:`ChatResult` holds answers in ``texts`` and the thinking beside them in ``reasonings``.
A reply is an answer only when it is complete (:class:`IncompleteReply` says why one is not): a
stream that ended without its final chunk, a reply with no answer in it, or one cut off while
still thinking.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langgraph_feedit.errors import has_secrets, redact
from langgraph_feedit.thinking import (
    DEFAULT_THINK_TAGS,
    ReasoningSplitter,
    SplitReply,
    split_reply,
)
from langgraph_feedit.usage import Usage

__all__ = [
    "DEFAULT_THINK_TAGS",
    "ChatRequest",
    "ChatResult",
    "Choices",
    "IncompleteReply",
    "JsonMode",
    "ReasoningSplitter",
    "SplitReply",
    "TokenLogprobs",
    "pooled_reward",
    "read_choices",
    "read_stream",
    "refuses_response_format",
    "response_format",
    "split_reply",
    "usage_of",
    "why_no_answer",
]


class IncompleteReply(Exception):
    """A reply that is no answer: cut off, empty, or stopped while thinking.

    ``retryable``: whether asking again may help (a broken stream, an empty reply) or not (a
    reply that ran out of ``max_tokens`` while thinking will again, at the same settings).
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


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
    reasonings: list[str | None] = field(default_factory=list)
    """Per choice, the model's thinking (``None`` where it sent none); ``texts`` never holds
    it (see :func:`split_reply`)."""
    incomplete: list[str | None] = field(default_factory=list)
    """Per choice, why it is no answer (``None`` when it is one). Only a call that asked for no
    answer (``answer_required=False``: a principle judge reads one token's logprobs) gets a
    result with an incomplete choice; any other such call fails."""

    def __post_init__(self) -> None:
        # A backend may write a key into a reply it answers 200 (an echo, a prompt that asks
        # for the environment): no answer or thinking carries one on, to a trace, a store, a
        # page or a door's reply.
        if has_secrets():
            object.__setattr__(self, "texts", [redact(t) for t in self.texts])
            reasonings = [None if r is None else redact(r) for r in self.reasonings]
            object.__setattr__(self, "reasonings", reasonings)


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
    on_reasoning: Callable[[str], Awaitable[None]] | None = None
    """Streamed thinking goes here (the answer to ``on_token``), when given."""
    think_tags: tuple[str, str] = DEFAULT_THINK_TAGS
    answer_required: bool = True
    """Whether a choice without an answer fails the call (see :class:`IncompleteReply`)."""

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
    reasonings: list[str | None] = field(default_factory=list)
    incomplete: list[str | None] = field(default_factory=list)

    def extend(self, other: Choices, limit: int | None = None) -> None:
        self.texts.extend(other.texts[:limit])
        self.reasons.extend(other.reasons[:limit])
        self.logprobs.extend(other.logprobs[:limit])
        self.reasonings.extend(other.reasonings[:limit])
        self.incomplete.extend(other.incomplete[:limit])
        self.usage = self.usage + other.usage


_STILL_THINKING = "the reply stopped while still thinking"


def _why_incomplete(split: SplitReply, reason: str | None) -> str | None:
    """Why a choice is no answer, or ``None`` when it is one."""
    if split.unclosed or (split.reasoning and not split.answer.strip() and reason == "length"):
        # A server with a reasoning parser sends thinking cut off this way: all in its field.
        cut = "max_tokens cut it off" if reason == "length" else f"finish_reason {reason!r}"
        return f"{_STILL_THINKING} ({cut}): it has no answer"
    if not split.answer.strip():
        if split.reasoning:
            return "the reply has thinking but no answer"
        return "the reply is empty"
    return None


def why_no_answer(incomplete: Sequence[str | None]) -> None:
    """Raise :class:`IncompleteReply` for the first choice that is no answer.

    A reply cut off while thinking is not worth asking again (at the same ``max_tokens`` it
    will be again); an empty reply or a broken stream is.
    """
    for why in incomplete:
        if why is not None:
            raise IncompleteReply(why, retryable=not why.startswith(_STILL_THINKING))


def read_choices(reply: Any, tags: tuple[str, str] = DEFAULT_THINK_TAGS) -> Choices | None:
    """The choices of a ``chat.completion`` reply, each split into its thinking and answer,
    or ``None`` when it has none to read."""
    try:
        ordered = sorted(reply["choices"], key=lambda c: int(c.get("index") or 0))
        splits = [split_reply(c.get("message") or {}, tags) for c in ordered]
        reasons = [c.get("finish_reason") for c in ordered]
        choices = Choices(
            texts=[s.answer for s in splits],
            reasons=reasons,
            logprobs=[first_token(c.get("logprobs")) for c in ordered],
            usage=usage_of(reply.get("usage")),
            reasonings=[s.reasoning for s in splits],
            incomplete=[_why_incomplete(s, r) for s, r in zip(splits, reasons, strict=True)],
        )
    except (KeyError, TypeError, AttributeError, ValueError):
        return None
    return choices if choices.texts else None


async def read_stream(
    events: AsyncIterable[Mapping[str, Any]],
    model: str,
    on_token: Callable[[str], Awaitable[None]],
    *,
    on_reasoning: Callable[[str], Awaitable[None]] | None = None,
    tags: tuple[str, str] = DEFAULT_THINK_TAGS,
) -> ChatResult:
    """A streamed reply's ``chat.completion.chunk`` events gathered into one result, each
    piece of the answer handed to ``on_token`` and of the thinking to ``on_reasoning`` as it
    arrives.

    Raises:
        IncompleteReply: the stream ended before its choice's final chunk (the one with a
            ``finish_reason``): what came is part of an answer, never a whole one.
    """
    splitter = ReasoningSplitter(tags)
    reason: str | None = None
    usage: Usage | None = None
    first: TokenLogprobs | None = None
    async for chunk in events:
        if chunk.get("usage") is not None:
            usage = usage_of(chunk["usage"])
        for choice in chunk.get("choices") or ():
            if first is None:
                first = first_token(choice.get("logprobs"))
            delta = choice.get("delta")
            if delta:
                thought, said = splitter.feed(delta)
                if thought and on_reasoning is not None:
                    await on_reasoning(thought)
                if said:
                    await on_token(said)
            if choice.get("finish_reason"):
                reason = choice["finish_reason"]
    if reason is None:
        raise IncompleteReply("the stream ended without a finish_reason", retryable=True)
    split = splitter.finish()
    return ChatResult(
        texts=[split.answer],
        usage=usage or Usage(calls=1),
        model=model,
        finish_reasons=[reason],
        logprobs=[first],
        reasonings=[split.reasoning],
        incomplete=[_why_incomplete(split, reason)],
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
    # Reasoning tokens are part of completion_tokens; servers that count them apart say so in
    # completion_tokens_details (OpenAI, vLLM with a reasoning parser). Absent: not known.
    details = usage.get("completion_tokens_details")
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return Usage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cached_tokens=int(cached or 0),
        calls=1,
        reasoning_tokens=int(reasoning or 0),
        reasoning_reported=0 if reasoning is None else 1,
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
