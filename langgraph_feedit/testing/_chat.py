"""What the simulated server answers a chat request: the request checked, its reply decided.

A pure function of the server's settings and the request's body (plus the prefix cache's
count of prompt tokens): the checks a real server makes (``messages``, ``n``, ``max_tokens``,
``response_format``), the choices and their thinking, the logprobs and the usage. It says
nothing of time: :mod:`._server` decides when the reply is sent (its latency model, its slots,
streamed or whole), and :mod:`._replies` writes each piece of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from langgraph_feedit.testing._faults import error_reply
from langgraph_feedit.testing._replies import (
    PRINCIPLE_MARK,
    Choice,
    TokenLogprob,
    chat_usage,
    compose,
    content_text,
    judged_response,
    principle_logprobs,
    principle_margin,
    reply_key,
    think_first,
    thinking,
    thinks,
    token_logprobs,
)


class ChatSettings(Protocol):
    """The settings of :class:`~langgraph_feedit.testing.SimServer` that shape a chat reply
    (read when each request comes, so a test may change them between requests)."""

    seed: int
    mean_tokens: int
    sd_tokens: float
    min_tokens: int
    reject_n: bool
    ignore_n: bool
    logprobs: bool
    max_top_logprobs: int
    response_formats: tuple[str, ...]
    refusal_status: int
    reasoning: str | None
    reasoning_field: str
    think_tokens: int
    think_unclosed: bool


@dataclass(frozen=True, slots=True)
class ChatReply:
    """A chat request's reply, decided before it is sent."""

    key: int
    """The request's reply key (:func:`~._replies.reply_key`): its id and seeds derive from it."""
    choices: list[Choice]
    usage: dict[str, Any]
    logprobs: list[list[TokenLogprob]] | None
    """Per choice, ``logprobs.content``; ``None`` when not asked for or not sent."""
    separated: tuple[str, list[int]] | None
    """The field the thinking goes in and, per choice, how many leading tokens are thinking,
    when the server plays one with a reasoning parser and the request thinks."""

    @property
    def completion_tokens(self) -> int:
        return sum(len(tokens) for tokens, _ in self.choices)

    @property
    def longest(self) -> int:
        """The longest choice's tokens: what the decode time is counted from."""
        return max(len(tokens) for tokens, _ in self.choices)


def chat_reply(
    sim: ChatSettings,
    body: dict[str, Any],
    prompt_usage: Callable[[list[Any]], tuple[int, int]],
) -> ChatReply | web.Response:
    """The reply to a chat request, or the error a real server answers it with.

    ``prompt_usage``: the prompt tokens of ``messages`` and how many of them were cached (the
    server's prefix cache, which counts each request it is asked about).
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return error_reply(
            400, "'messages' must be a non-empty list", "invalid_request_error", "messages"
        )
    n = body.get("n") or 1
    if not isinstance(n, int) or n < 1:
        return error_reply(
            400, f"'n' must be a positive integer, got {n!r}", "invalid_request_error", "n"
        )
    if n > 1 and sim.reject_n:
        message = f"n > 1 is not supported by this server (got n={n})"
        return error_reply(400, message, "invalid_request_error", "n")
    if sim.ignore_n:
        n = 1
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    if cap is not None and (not isinstance(cap, int) or cap < 1):
        return error_reply(
            400,
            "'max_tokens' must be a positive integer",
            "invalid_request_error",
            "max_tokens",
        )
    form = body.get("response_format")
    kind = form.get("type") if isinstance(form, dict) else None
    if form is not None and kind not in sim.response_formats:
        message = f"response_format of type {kind!r} is not supported by this server"
        return error_reply(sim.refusal_status, message, "invalid_request_error", "response_format")
    last_user = next(
        (
            content_text(m.get("content"))
            for m in reversed(messages)
            if isinstance(m, dict) and m.get("role") == "user"
        ),
        "",
    )
    yes_no: list[tuple[str, float]] | None = None
    thinking_now = sim.reasoning is not None and thinks(body)
    if PRINCIPLE_MARK in last_user:
        principle = last_user.split(PRINCIPLE_MARK, 1)[1]
        margin = principle_margin(sim.seed, judged_response(messages), principle)
        yes_no = principle_logprobs(margin)
    key = reply_key(sim.seed, messages, body)
    thought_counts: list[int] = []
    choices = [
        compose(
            messages,
            key,
            i,
            cap,
            mean_tokens=sim.mean_tokens,
            sd_tokens=sim.sd_tokens,
            min_tokens=sim.min_tokens,
            json_reply=kind in ("json_schema", "json_object"),
            principle_first=yes_no,
        )
        for i in range(n)
    ]
    first_listed = yes_no
    if thinking_now:
        first_listed = think_first(yes_no)
        thought = [_thought(sim, key, i, cap, choices[i]) for i in range(n)]
        choices, thought_counts = [c for c, _ in thought], [k for _, k in thought]
    logprobs = None
    if body.get("logprobs") and sim.logprobs:
        asked = body.get("top_logprobs")
        top = min(sim.max_top_logprobs, asked if isinstance(asked, int) else 0)
        logprobs = [
            token_logprobs(tokens, key, i, top, first_listed if yes_no or thinking_now else None)
            for i, (tokens, _) in enumerate(choices)
        ]
    prompt_tokens, cached = prompt_usage(messages)
    usage = chat_usage(prompt_tokens, sum(len(tokens) for tokens, _ in choices), cached)
    separated: tuple[str, list[int]] | None = None
    if sim.reasoning == "field":
        # A server with a reasoning parser counts thinking apart in every reply (0 when
        # the request switched it off), as OpenAI's does.
        usage["completion_tokens_details"] = {"reasoning_tokens": sum(thought_counts)}
        if thinking_now:
            separated = (sim.reasoning_field, thought_counts)
    return ChatReply(key, choices, usage, logprobs, separated)


def _thought(
    sim: ChatSettings, key: int, i: int, cap: int | None, answer: Choice
) -> tuple[Choice, int]:
    """A choice with thinking before its answer, cut at ``cap``, and how many of its
    leading tokens are thinking (the tags' own included in ``tags`` form)."""
    count = sim.think_tokens
    if sim.think_unclosed:
        count = max(count, (cap or count) + 1)  # runs past max_tokens
    thought = thinking(key, i, count)
    tags = sim.reasoning == "tags"
    lead = ["<think>", "\n", *thought, "\n</think>\n\n"] if tags else thought
    if sim.think_unclosed:
        lead = lead[:-1] if tags else lead
        tokens = lead[:cap] if cap else lead
        return (tokens, "length"), len(tokens)
    tokens = lead + answer[0]
    if cap is not None and len(tokens) > cap:
        return (tokens[:cap], "length"), min(len(lead), cap)
    return (tokens, answer[1]), len(lead)
