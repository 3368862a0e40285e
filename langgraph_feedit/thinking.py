"""Where a reply's thinking ends and its answer begins: one split, for whole replies and streams.

A reasoning model's thinking comes in a ``reasoning_content`` or ``reasoning`` field (vLLM,
SGLang, llama.cpp, Ollama, DeepSeek), or as a leading ``<think>...</think>`` block in
``content`` (a server without a reasoning parser). :func:`split_reply` splits a whole reply's
message, :class:`ReasoningSplitter` a stream's deltas as they come, to the same pieces. Pure
text, no I/O and no notion of a call: :mod:`langgraph_feedit.chatapi` reads replies through
it (and re-exports its names), so nothing above that module sees raw text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_THINK_TAGS",
    "REASONING_FIELDS",
    "ReasoningSplitter",
    "SplitReply",
    "split_reply",
]

DEFAULT_THINK_TAGS: tuple[str, str] = ("<think>", "</think>")
"""The tags of a thinking block in ``content`` (Qwen3, DeepSeek-R1, Nemotron, gpt-oss through
a chat template): what a server without a reasoning parser sends."""

REASONING_FIELDS = ("reasoning_content", "reasoning")
"""Where servers put the thinking they separate: ``reasoning_content`` (vLLM before 0.11,
SGLang, llama.cpp, DeepSeek) or ``reasoning`` (vLLM since, Ollama, OpenRouter)."""


@dataclass(frozen=True, slots=True)
class SplitReply:
    """One choice's message split into its thinking and its answer."""

    answer: str
    reasoning: str | None = None
    """The thinking, ``None`` when the reply had none."""
    unclosed: bool = False
    """The thinking block in ``content`` never closed: the reply has no answer."""


def _field_reasoning(message: Mapping[str, Any]) -> str | None:
    for name in REASONING_FIELDS:
        value = message.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def split_reply(
    message: Mapping[str, Any] | None, tags: tuple[str, str] = DEFAULT_THINK_TAGS
) -> SplitReply:
    """A reply message's thinking and answer: a pure function of the reply's JSON.

    The thinking is the ``reasoning_content`` or ``reasoning`` field, plus a thinking block
    that ``content`` opens with (``tags``, leading whitespace aside); the answer is what
    follows the block. An empty opening tag (``("", "</think>")``) is for models whose chat
    template opens the block in the prompt (DeepSeek-R1's distills): ``content`` starts inside
    it. A block that never closes leaves no answer (``unclosed``), with an empty opening tag
    too: a stream cannot tell thinking from answer before the block closes, so neither may
    the whole reply.

    Example:
        >>> split_reply({"content": "<think>2+2 is 4</think>\n\nFour."})
        SplitReply(answer='Four.', reasoning='2+2 is 4', unclosed=False)
    """
    if not message:
        return SplitReply("")
    content = message.get("content")
    text = content if isinstance(content, str) else ""
    field_reasoning = _field_reasoning(message)
    opening, closing = tags
    head = text.lstrip()
    if opening and not head.startswith(opening):
        return SplitReply(text, field_reasoning)
    inside = head[len(opening) :]
    end = inside.find(closing)
    if end == -1:
        thought = _joined(field_reasoning, inside.strip())
        return SplitReply("", thought, unclosed=True)
    thought = _joined(field_reasoning, inside[:end].strip())
    return SplitReply(inside[end + len(closing) :].lstrip(), thought)


def _joined(first: str | None, second: str) -> str | None:
    parts = [p for p in (first, second) if p]
    return "\n\n".join(parts) if parts else None


class ReasoningSplitter:
    """A streamed choice's deltas split as :func:`split_reply` splits a whole message.

    :meth:`feed` takes one delta and returns ``(thinking, answer)`` pieces to hand on (either may
    be empty); text that may still turn out to be a tag is held back until it is known. The
    pieces joined are what :func:`split_reply` makes of the joined deltas, but for the
    whitespace around the block, which the whole-message split trims.
    """

    __slots__ = ("_close", "_held", "_open", "_state", "answer", "reasoning")

    def __init__(self, tags: tuple[str, str] = DEFAULT_THINK_TAGS) -> None:
        self._open, self._close = tags
        self._state = "start" if self._open else "thinking"
        self._held = ""
        self.reasoning: list[str] = []
        self.answer: list[str] = []

    @property
    def unclosed(self) -> bool:
        """Whether the stream so far is inside a thinking block in ``content``."""
        return self._state == "thinking"

    def feed(self, delta: Mapping[str, Any]) -> tuple[str, str]:
        thought = _field_reasoning(delta) or ""
        content = delta.get("content")
        said = ""
        if isinstance(content, str) and content:
            more, said = self._content(content)
            thought += more
        if thought:
            self.reasoning.append(thought)
        if said:
            self.answer.append(said)
        return thought, said

    def _content(self, piece: str) -> tuple[str, str]:
        if self._state == "answer":
            return "", piece
        text = self._held + piece
        self._held = ""
        if self._state == "start":
            head = text.lstrip()
            if not head:
                self._held = text
                return "", ""
            if head.startswith(self._open):
                self._state = "thinking"
                text = head[len(self._open) :]
            elif self._open.startswith(head):
                self._held = text  # maybe the tag, cut in two
                return "", ""
            else:
                self._state = "answer"
                return "", text
        if self._state == "after":
            return "", self._after(text)
        end = text.find(self._close)
        if end != -1:
            self._state = "after"
            rest = text[end + len(self._close) :]
            thought = text[:end]
            return thought, self._after(rest)
        # Hold back a tail that may be the start of the closing tag.
        keep = _partial_suffix(text, self._close)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep], ""

    def _after(self, text: str) -> str:
        """The answer after the block: its leading whitespace dropped, as the whole split does."""
        text = text.lstrip()
        if text:
            self._state = "answer"
        return text

    def finish(self) -> SplitReply:
        """The whole choice split, once its stream has ended."""
        if self._held and self._state in ("start", "answer"):
            self.answer.append(self._held)
        elif self._held and self._state == "thinking":
            self.reasoning.append(self._held)
        self._held = ""
        thought = "".join(self.reasoning).strip() or None
        if self._state == "thinking":
            return SplitReply("", thought, unclosed=True)
        return SplitReply("".join(self.answer), thought)


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of ``text`` that is a proper start of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0
