"""Model judges that score one candidate: the ``principle`` judge (a Yes/No token per
principle, read from its logprobs, with the ``llm`` rating where they cannot be read) and the
``llm`` rating (JSON constrained by a schema, else a score parsed from text); and what a run
learns of the judge endpoint beside its drafts (:func:`discover`). See :mod:`.judges`."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig

from langgraph_feedit._gather import all_or_cancel
from langgraph_feedit._requests import one_attempt
from langgraph_feedit.calls import RoleCaller
from langgraph_feedit.chatapi import ChatResult, TokenLogprobs
from langgraph_feedit.config import JudgeKind, Principle
from langgraph_feedit.endpoints import PROBE_MESSAGES, Endpoint
from langgraph_feedit.prompts import (
    RATING_SCHEMA,
    TemplateSet,
    parse_rating_json,
    parse_score,
    principle_messages,
    rating_messages,
)
from langgraph_feedit.state import JudgePath
from langgraph_feedit.tracing import CallInfo
from langgraph_feedit.usage import Usage

TOP_LOGPROBS = 20
"""Alternatives asked for at the principle judge's one token. Yes and No are among the top
few whenever the model follows "Only answer Yes or No"; 20 is what OpenAI allows at most."""


@dataclass(slots=True)
class JudgeResult:
    score: float | None
    usage: Usage
    note: str | None = None
    model: str | None = None
    path: JudgePath | None = None
    principle_scores: dict[str, float] | None = None
    """Per principle (``principle`` judge), its logprob(Yes) - logprob(No)."""
    parts: dict[str, float] | None = None
    """Per part of a ``combined`` judge, its score (before weighting)."""


_YES, _NO = "yes", "no"
_TOKEN_EDGE = " \t\n\r\u0120\u2581.,:;!\"'*"  # spaces, BPE/SentencePiece space marks


def _answer(token: str) -> str | None:
    """``yes`` or ``no`` for a token variant of either ("Yes", " yes", "YES", "\u0120Yes",
    "\u2581No", "No."), else ``None``."""
    word = token.strip(_TOKEN_EDGE).lower()
    return word if word in (_YES, _NO) else None


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def yes_no_margin(first: TokenLogprobs) -> tuple[float, str | None]:
    """logprob(Yes) - logprob(No) at the first token, and a note when it had to be estimated.

    Each side is the log-sum-exp over its token variants among the token and its
    ``top_logprobs`` (each distinct token string once). When one side is not listed, its
    logprob is taken as the lowest listed minus log 2: below everything listed, which is all
    that is known of it (a top-k list omits only tokens no likelier than its last). When
    neither is listed, the margin is 0: the model said neither, and no preference is known.
    """
    seen: dict[str, float] = {}
    for token, logprob in [(first.token, first.logprob), *first.top]:
        if math.isfinite(logprob):
            seen.setdefault(token, logprob)
    sides: dict[str, list[float]] = {_YES: [], _NO: []}
    for token, logprob in seen.items():
        answer = _answer(token)
        if answer is not None:
            sides[answer].append(logprob)
    if not sides[_YES] and not sides[_NO]:
        return 0.0, f"neither Yes nor No among the top logprobs (answered {first.token!r})"
    floor = (min(seen.values()) if seen else 0.0) - math.log(2.0)
    yes = _logsumexp(sides[_YES]) if sides[_YES] else floor
    no = _logsumexp(sides[_NO]) if sides[_NO] else floor
    note = None
    if not sides[_YES] or not sides[_NO]:
        missing = "Yes" if not sides[_YES] else "No"
        note = f"{missing} not among the top logprobs: taken as the lowest listed minus log 2"
    return yes - no, note


def _weighted_mean(values: Iterable[tuple[float, float]]) -> float:
    pairs = list(values)
    return sum(v * w for v, w in pairs) / sum(w for _, w in pairs)


@dataclass(frozen=True, slots=True)
class _Judging:
    """One candidate to score, and how its judge calls are made and reported."""

    caller: RoleCaller
    conversation: Sequence[Mapping[str, Any]]
    text: str
    templates: TemplateSet
    index: int
    config: RunnableConfig | None
    info: CallInfo | None

    def complete(self, messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> Any:
        """One judge call for this candidate (``kwargs`` as :meth:`RoleCaller.complete`)."""
        return self.caller.complete(
            "judge", messages, index=self.index, config=self.config, info=self.info, **kwargs
        )


async def _rate(j: _Judging) -> JudgeResult:
    """The ``llm`` rating: JSON constrained by :data:`RATING_SCHEMA` where the endpoint has not
    refused ``response_format``, else the ``Score: N`` rubric parsed from text."""
    endpoint = await j.caller.endpoint("judge")
    as_json = bool(endpoint.json_modes)
    result: ChatResult = await j.complete(
        rating_messages(j.conversation, j.text, j.templates, json=as_json),
        json_schema=RATING_SCHEMA if as_json else None,
    )
    reply = result.texts[0] if result.texts else ""
    rating = parse_rating_json(reply) if as_json else None
    path: JudgePath = "json_schema" if rating is not None and result.json_mode else "text"
    if rating is None:
        rating = parse_score(reply)
    if rating is None:
        path = "unscored"
    note = None if rating is not None else f"no score found in judge reply: {reply[-200:]!r}"
    return JudgeResult(rating, result.usage, note=note, model=result.model, path=path)


async def _principles(j: _Judging) -> JudgeResult:
    """The ``principle`` judge: one Yes/No token per principle, read from its logprobs."""
    endpoint = await j.caller.endpoint("judge")
    if isinstance(endpoint, Endpoint):
        await endpoint.logprobs_known()  # a probe made beside the drafts (see discover)
    if endpoint.logprobs_supported is False:
        return _fell_back(await _rate(j), Usage(), _NO_LOGPROBS)
    if endpoint.yes_no_unanswered:
        return _fell_back(await _rate(j), Usage(), _NO_YES_NO)
    settings = j.caller.settings("judge")
    principles: list[Principle] = settings.principle_list()
    results: list[ChatResult] = await all_or_cancel(
        *(
            j.complete(
                principle_messages(j.conversation, j.text, p.text, j.templates),
                max_tokens=1,
                temperature=0.0,
                top_logprobs=TOP_LOGPROBS,
                # One token is all that is read: a reply that is no answer (thinking cut off
                # at its first token) is judged below, not refused.
                answer_required=False,
                think=False if settings.thinking_settings().can_turn_off() else None,
            )
            for p in principles
        )
    )
    usage = sum((r.usage for r in results), Usage())
    firsts = [r.logprobs[0] if r.logprobs else None for r in results]
    if any(first is None for first in firsts):
        return _fell_back(await _rate(j), usage, _NO_LOGPROBS)
    opening = settings.thinking_settings().tags[0]
    said = next((r for r in results if not _says_yes_no(r, opening)), None)
    if said is not None:
        first = said.logprobs[0]
        token = first.token if first is not None else ""
        if not endpoint.yes_no_unanswered:
            endpoint.yes_no_unanswered = True
            warnings.warn(
                f"the principle judge at {endpoint.label(said.model)} answered {token!r}, not "
                "Yes or No (a reasoning model thinking first?): its candidates are rated "
                "instead (judge kind 'llm'); set roles.judge.thinking to turn its thinking "
                "off, or choose roles.judge.kind = 'llm'",
                RuntimeWarning,
                stacklevel=2,
            )
        return _fell_back(await _rate(j), usage, f"{_NO_YES_NO} (it answered {token!r})")
    scores: dict[str, float] = {}
    notes: list[str] = []
    weighted: list[tuple[float, float]] = []
    for p, first in zip(principles, firsts, strict=True):
        assert first is not None  # checked above
        margin, note = yes_no_margin(first)
        scores[p.text] = margin
        weighted.append((margin, p.weight))
        if note:
            notes.append(f"{p.text[:60]!r}: {note}" if len(principles) > 1 else note)
    return JudgeResult(
        _weighted_mean(weighted),
        usage,
        note="; ".join(notes) or None,
        model=results[0].model,
        path="logprobs",
        principle_scores=scores,
    )


def _says_yes_no(result: ChatResult, opening: str) -> bool:
    """Whether a principle question's reply can be read as a Yes or No: no thinking came
    before it (a server with a reasoning parser moves a ``<think>`` token out of ``content``,
    but its logprobs still show it, so a first token that opens a thinking block counts as
    thinking), and its first token or one of its top alternatives is a Yes or a No. A small
    model whose likeliest first token is a word (``The``) still ranks Yes against No among
    the others, and that margin is a measurement; a model that starts thinking is not
    answering at all, and any margin read there would be made up."""
    first = result.logprobs[0] if result.logprobs else None
    if first is None or (result.reasonings and result.reasonings[0]):
        return False
    if opening and first.token.strip() and opening.startswith(first.token.strip()):
        return False
    return any(_answer(token) is not None for token, _ in [(first.token, 0.0), *first.top])


_NO_LOGPROBS = "the endpoint returns no logprobs"
_NO_YES_NO = "the judge's first token is no Yes or No"


def _fell_back(rated: JudgeResult, spent: Usage, why: str) -> JudgeResult:
    """A rating standing in for the principle judge where it cannot be read."""
    said = f"{why}, so the candidate was rated instead"
    rated.usage = spent + rated.usage
    rated.note = f"{said}; {rated.note}" if rated.note else said
    return rated


def reads_logprobs(caller: RoleCaller, kind: JudgeKind) -> bool:
    """Whether a run's judge reads logprobs (``principle``, alone or in a ``combined``
    judge) from an endpoint worth probing for them (:func:`discover`): not an embedded one
    (llama.cpp's server sends logprobs, and it is not started for a probe), nor a chat model."""
    settings = caller.settings("judge")
    kinds = {kind}
    if kind == "combined" and settings.combine:
        kinds = {p.kind for p in settings.combine_parts()}
    if "principle" not in kinds or settings.chat_model is not None or "judge" in caller.models:
        return False
    return bool(settings.base_url) or "judge" in caller.clients


async def discover(caller: RoleCaller, config: RunnableConfig | None = None) -> Usage:
    """Learn whether the judge endpoint sends logprobs where that is not yet known
    (:meth:`Endpoint.discover_logprobs`): a run does it beside its drafts, so a principle
    judge on a server without them costs no extra round. The probe is one of the run's judge
    calls (reported to ``config``'s callbacks, charged to its budget, asked with thinking
    off where the role says how); returns its usage where this run made it."""
    endpoint = await caller.endpoint("judge")
    if not isinstance(endpoint, Endpoint):
        return Usage()
    settings = caller.settings("judge")

    async def ask() -> Usage:
        with one_attempt():  # a failed probe leaves support unknown: the judge finds out
            result: ChatResult = await caller.complete(
                "judge",
                PROBE_MESSAGES,
                config=config,
                info=CallInfo(role="judge", node_id="logprobs probe", kind="probe"),
                max_tokens=1,
                temperature=0.0,
                top_logprobs=1,
                answer_required=False,
                think=False if settings.thinking_settings().can_turn_off() else None,
            )
        return result.usage

    return await endpoint.discover_logprobs(ask)
