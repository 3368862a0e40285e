"""Prompt templates per role, as named and versioned sets, and the parsers of their replies.

A template set is a TOML file with ``name``, ``version`` and one template per role call:
``critique``, ``edit`` (with ``{feedback}``, and optionally ``{request}``: the last user
turn), ``judge_rating`` (a rubric ending in
``Score: N``), ``judge_rating_json`` (the same rubric, answered as JSON where the endpoint
constrains output by a schema), ``judge_principle`` (with ``{principle}``; the question the
``principle`` judge asks, answered Yes or No) and ``judge_pairwise`` (with ``{question}``,
``{response_a}``, ``{response_b}``). Built in: ``generic`` (any instruct model)
and ``nemotron`` (NVIDIA's dedicated feedback and edit models). A role's ``template`` setting
names a set or a path to a TOML file of one's own; a file may set only some templates and
inherit the rest from ``base`` (default ``generic``).

Every builder keeps the conversation whole (system and earlier turns) and appends turns after
it: the candidate enters as the assistant turn.
"""

from __future__ import annotations

import functools
import hashlib
import json as jsonlib
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from langgraph_feedit.errors import ConfigError

__all__ = [
    "BUILTIN_TEMPLATES",
    "RATING_SCHEMA",
    "Message",
    "TemplateSet",
    "asks_no_change",
    "critique_messages",
    "edit_messages",
    "load_templates",
    "parse_critique_verdict",
    "parse_pairwise",
    "parse_rating_json",
    "parse_score",
    "principle_messages",
    "rating_messages",
    "render_conversation",
    "template_digest",
]

Message = dict[str, Any]
BUILTIN_TEMPLATES = ("generic", "nemotron")


class TemplateSet(BaseModel):
    """One named, versioned set of prompt templates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    critique: str
    edit: str
    judge_rating: str
    judge_rating_json: str
    judge_principle: str
    judge_pairwise: str

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


@functools.lru_cache(maxsize=64)
def template_digest(spec: str | None) -> str:
    """A digest of the template set a role names (its every template), which keys cached
    calls: a set's name stays when its text changes, the digest does not."""
    blob = load_templates(spec).model_dump_json()
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@functools.cache
def _builtin(name: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


@functools.lru_cache(maxsize=64)
def load_templates(spec: str | None) -> TemplateSet:
    """The template set a role names: ``generic``, ``nemotron`` or a TOML file's path.

    Each set is read once per process (graph nodes must not block their event loop on
    file reads; the graph loads every role's set when it is built).

    Raises:
        ConfigError: an unknown name, an unreadable file, or an unknown or missing template.
    """
    spec = spec or "generic"
    if spec in BUILTIN_TEMPLATES:
        return TemplateSet.model_validate(_builtin(spec))
    path = Path(spec)
    if not path.suffix:
        raise ConfigError(
            f"unknown template set {spec!r}: use one of {', '.join(BUILTIN_TEMPLATES)} "
            "or the path of a .toml file",
            key="template",
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read template file {path}: {exc}", source=str(path)) from exc
    base = str(data.pop("base", "generic"))
    if base not in BUILTIN_TEMPLATES:
        raise ConfigError(f"{path}: base must be one of {BUILTIN_TEMPLATES}", key="base")
    merged = {**_builtin(base), "name": path.stem, "version": "custom", **data}
    try:
        return TemplateSet.model_validate(merged)
    except ValidationError as exc:
        keys = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
        raise ConfigError(f"{path}: invalid template keys: {keys}", source=str(path)) from None


def critique_messages(
    conversation: Sequence[Mapping[str, Any]], response: str, templates: TemplateSet
) -> list[Message]:
    """[conversation..., assistant: response, user: critique instruction]."""
    return [
        *(dict(m) for m in conversation),
        {"role": "assistant", "content": response},
        {"role": "user", "content": templates.critique},
    ]


_PLACEHOLDER = re.compile(r"\{(request|feedback)\}")


def edit_messages(
    conversation: Sequence[Mapping[str, Any]], response: str, feedback: str, templates: TemplateSet
) -> list[Message]:
    """[conversation..., assistant: response, user: edit instruction with the feedback].

    ``{request}`` in the template is the conversation's last user turn: the instruction can
    end by asking it again, which a small model answers as a request rather than replying
    to the feedback (see :mod:`langgraph_feedit.prompts.answers` for what is done when it
    does not)."""
    request = next(
        (
            _content_text(m.get("content"))
            for m in reversed(conversation)
            if m.get("role") == "user"
        ),
        "",
    )
    values = {"request": request.strip(), "feedback": feedback.strip()}
    # One pass, so a request or feedback that contains "{feedback}" stays as it is.
    text = _PLACEHOLDER.sub(lambda m: values[m.group(1)], templates.edit)
    return [
        *(dict(m) for m in conversation),
        {"role": "assistant", "content": response},
        {"role": "user", "content": text},
    ]


def rating_messages(
    conversation: Sequence[Mapping[str, Any]],
    response: str,
    templates: TemplateSet,
    *,
    json: bool = False,
) -> list[Message]:
    """[conversation..., assistant: response, user: rating rubric] (the JSON rubric with
    ``json``, for an endpoint that constrains the reply to :data:`RATING_SCHEMA`)."""
    return [
        *(dict(m) for m in conversation),
        {"role": "assistant", "content": response},
        {
            "role": "user",
            "content": templates.judge_rating_json if json else templates.judge_rating,
        },
    ]


def principle_messages(
    conversation: Sequence[Mapping[str, Any]],
    response: str,
    principle: str,
    templates: TemplateSet,
) -> list[Message]:
    """[conversation..., assistant: response, user: "... satisfies this principle: P. Only
    answer Yes or No."]: Nemotron-Reward-Principle's form. A final full stop of ``principle``
    is dropped, since the template puts one after it."""
    text = templates.judge_principle.replace("{principle}", principle.strip().rstrip("."))
    return [
        *(dict(m) for m in conversation),
        {"role": "assistant", "content": response},
        {"role": "user", "content": text},
    ]


def pairwise_messages(
    conversation: Sequence[Mapping[str, Any]],
    response_a: str,
    response_b: str,
    templates: TemplateSet,
) -> list[Message]:
    """One user turn comparing two responses to the conversation."""
    text = (
        templates.judge_pairwise.replace("{question}", render_conversation(conversation))
        .replace("{response_a}", response_a)
        .replace("{response_b}", response_b)
    )
    return [{"role": "user", "content": text}]


def render_conversation(conversation: Sequence[Mapping[str, Any]]) -> str:
    """The conversation as text, one labelled block per turn (a lone user turn stays bare)."""
    if len(conversation) == 1 and conversation[0].get("role") == "user":
        return _content_text(conversation[0].get("content"))
    return "\n\n".join(
        f"[{m.get('role', 'user')}]\n{_content_text(m.get('content'))}" for m in conversation
    )


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", "")) if isinstance(p, Mapping) else str(p) for p in content
        )
    return "" if content is None else str(content)


# -- parsers -----------------------------------------------------------------------------------

_VERDICT = re.compile(
    r"\bthe\s+response\s+is\s+\**\s*(not|slightly|partially|mostly|perfectly)\s*\**\s+helpful",
    re.IGNORECASE,
)


def parse_critique_verdict(text: str) -> str | None:
    """The helpfulness verdict of a critique ("The response is mostly helpful" -> ``mostly``),
    or ``None`` when it states none."""
    m = _VERDICT.search(text or "")
    return m.group(1).lower() if m else None


# A critique that asks for nothing, in the forms reviewers use when they find nothing to fix.
# Only as a sentence of its own ("No changes needed.", "There is nothing to improve."): "add an
# example; otherwise no changes are needed" asks for a change, and so does a sentence that goes
# on with "but", "however" or "except".
_NO_CHANGE = re.compile(
    r"(?:^|(?<=[.!?:\n]))\s*(?:\W+\s*)?(?:there\s+(?:is|are)\s+|i\s+(?:see|find)\s+)?(?:no\s+(?:further\s+)?(?:changes?|edits?|revisions?|improvements?)\s+"
    r"(?:is\s+|are\s+)?(?:needed|necessary|required)"
    r"|nothing\s+(?:needs\s+to\s+be\s+|to\s+)(?:changed?|improved?|fixed|fix|improve|change))"
    r"(?![^.\n]*\b(?:but|however|except)\b)",
    re.IGNORECASE,
)


def asks_no_change(text: str) -> bool:
    """Whether a critique asks for no change, so it is not *effective* feedback (the paper's
    term): its verdict is "The response is perfectly helpful" (both built-in templates ask for
    that verdict line first), or it says no changes are needed ("No changes needed.", "nothing
    to improve") with no "but" after it in the same sentence."""
    return parse_critique_verdict(text) == "perfectly" or bool(_NO_CHANGE.search(text or ""))


_NUM = r"(-?\d+(?:\.\d+)?)"
_SCORE_PATTERNS = (
    # "Score: 7", "**Score:** 7/10", "Final score - 8", "Rating: 6.5"
    re.compile(
        rf"(?:score|rating|grade)\s*\**\s*(?:[:=\-]|is)\s*\**\s*\[*{_NUM}\]*"
        rf"(?:\s*(?:/|out\s+of)\s*{_NUM})?",
        re.IGNORECASE,
    ),
    re.compile(rf"\[\[\s*{_NUM}\s*\]\]"),  # "[[7]]"
    re.compile(rf"\b{_NUM}\s*(?:/|out\s+of)\s*{_NUM}\b", re.IGNORECASE),  # "7/10"
)


def parse_score(text: str, *, low: float = 1.0, high: float = 10.0) -> float | None:
    """A rating in ``[low, high]`` from messy judge output, scaled to ``[0, 1]``.

    The last match of the most specific pattern wins (judges often restate the scale first);
    a score given out of another scale (``4/5``) is rescaled; ``None`` when no number in range
    is found.
    """
    for pattern in _SCORE_PATTERNS:
        matches = list(pattern.finditer(text or ""))
        for m in reversed(matches):
            value = float(m.group(1))
            scale = m.group(2) if m.lastindex and m.lastindex >= 2 else None
            if scale is not None:
                denom = float(scale)
                if denom <= 0:
                    continue
                value = low + (high - low) * value / denom if denom != high else value
            if math.isfinite(value) and low <= value <= high:
                return (value - low) / (high - low)
    return None


RATING_SCHEMA: dict[str, Any] = {
    "name": "rating",
    "schema": {
        "type": "object",
        "properties": {
            # Capped so that a model that rambles still closes the object within max_tokens.
            "reason": {"type": "string", "maxLength": 300},
            "score": {"type": "integer", "enum": list(range(1, 11))},
        },
        "required": ["reason", "score"],
        "additionalProperties": False,
    },
}
"""The JSON schema of a rating (``response_format``'s ``json_schema``): a short reason,
then an integer score from 1 to 10."""


def parse_rating_json(text: str) -> float | None:
    """The ``score`` (1-10) of a JSON rating scaled to ``[0, 1]``; ``None`` when the text is
    not a JSON object with an integer score in range (then the text parser is tried)."""
    try:
        data = jsonlib.loads(text)
    except ValueError:
        return None
    score = data.get("score") if isinstance(data, dict) else None
    if isinstance(score, bool) or not isinstance(score, int | float):
        return None
    if not (math.isfinite(score) and 1 <= score <= 10):
        return None
    return (float(score) - 1.0) / 9.0


_PAIR = (re.compile(r"\[\[\s*([ABC])\s*\]\]"), re.compile(r"\[\s*([ABC])\s*\]"))


def parse_pairwise(text: str) -> str | None:
    """``A``, ``B`` or ``C`` (tie) from a pairwise verdict; the last one given wins."""
    for pattern in _PAIR:
        found = pattern.findall(text or "")
        if found:
            return str(found[-1])
    return None
