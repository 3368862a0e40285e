"""Judges: one interface, eight kinds.

- ``principle`` (the default): for each principle, the judge model is asked whether the
  response satisfies it ("Only answer Yes or No", Nemotron-Reward-Principle's form) for one
  token at temperature 0 with ``top_logprobs``; the principle's score is logprob(Yes) minus
  logprob(No) at that token (see :func:`yes_no_margin`), and the candidate's the weighted mean
  over principles. Nothing is parsed from text, so it cannot fail to parse. The question is
  asked with thinking off where the judge role says how (``roles.judge.thinking``). An
  endpoint that sends no logprobs, or whose first token is no Yes or No (a reasoning model
  that starts thinking, or any other reply), gets the ``llm`` rating instead: a candidate is
  never given a score read off a token that is no answer. Either fallback is remembered per
  endpoint, the second is warned about once, and the trace node says which path scored it
  (``judge_path``) and why (``judge_note``).
- ``reward``: a reward-model endpoint (vLLM's pooling API) scores each candidate on its own,
  as the paper's Select model does. Scores are the model's raw rewards.
- ``llm``: a chat model rates each candidate against a rubric, 1-10 scaled to [0, 1]. Where
  the endpoint constrains output by a JSON schema (``response_format``) the rating is a JSON
  object (path ``json_schema``); where it refuses one (remembered per endpoint) or the reply
  is not valid JSON, the ``Score: N`` is parsed from messy output (path ``text``).
- ``pairwise``: a knockout bracket; every match is judged twice with the positions swapped, so
  position bias cancels. A candidate's score is the number of matches it won. With
  ``roles.judge.function`` set, a Python function judges each match instead of a model
  (:data:`PairwiseFunction`).
- ``consensus``: no model; the candidate most similar to the others wins (mean word-bigram
  Jaccard similarity, in [0, 1]).

- ``function``: a Python function of one's own, ``(conversation, candidate) -> float`` (sync
  or async), given in Python or as an import path ``module:function`` (``roles.judge.function``).
- ``verify``: ``feedit verify``'s checkers (IFEval's), for prompts that carry instruction ids
  (``roles.judge.questions``, an IFEval-format file): the share of instructions followed.
- ``combined``: a weighted sum of pointwise judges (``roles.judge.combine``), e.g. the verifier
  and the principle judge.

``principle``, ``reward``, ``llm``, ``function``, ``verify`` and ``combined`` are pointwise:
each candidate is scored the moment it exists, inside its own branch. ``pairwise`` and
``consensus`` compare candidates, so they score a whole round. Ties always go to the
candidate that comes first in tree order.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import itertools
import math
import re
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from langchain_core.runnables import RunnableConfig

from langgraph_feedit.calls import RoleCaller
from langgraph_feedit.chatapi import ChatResult, TokenLogprobs
from langgraph_feedit.config import JudgeKind, Principle, RoleConfig
from langgraph_feedit.endpoints import Endpoint
from langgraph_feedit.errors import ConfigError
from langgraph_feedit.prompts import (
    RATING_SCHEMA,
    TemplateSet,
    pairwise_messages,
    parse_pairwise,
    parse_rating_json,
    parse_score,
    principle_messages,
    rating_messages,
)
from langgraph_feedit.state import tree_order
from langgraph_feedit.tracing import CallInfo
from langgraph_feedit.usage import Usage

__all__ = [
    "POINTWISE",
    "TOP_LOGPROBS",
    "JudgeFunction",
    "JudgePath",
    "JudgeResult",
    "PairwiseFunction",
    "RoundResult",
    "check_judge",
    "consensus_scores",
    "discover",
    "rank_key",
    "rank_round",
    "reads_logprobs",
    "register_function",
    "resolve_function",
    "score_candidate",
    "yes_no_margin",
]

POINTWISE: frozenset[str] = frozenset(
    {"principle", "reward", "llm", "function", "verify", "combined"}
)

TOP_LOGPROBS = 20
"""Alternatives asked for at the principle judge's one token. Yes and No are among the top
few whenever the model follows "Only answer Yes or No"; 20 is what OpenAI allows at most."""

JudgePath = Literal["logprobs", "json_schema", "text", "unscored"]
"""How a pointwise model judge scored a candidate: ``logprobs`` (principle judge),
``json_schema`` (a rating constrained to JSON), ``text`` (a rating parsed from free text), or
``unscored`` (no score found)."""


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


@dataclass(slots=True)
class RoundResult:
    scores: dict[str, float]
    usage: Usage = field(default_factory=Usage)
    notes: list[str] = field(default_factory=list)


def rank_key(node: Mapping[str, Any]) -> tuple[bool, float, tuple[tuple[str, int], ...]]:
    """How candidates rank: highest score first, unscored last, ties to the earliest in tree
    order. The answer is the first; the next round and the door's ``n`` choices follow it."""
    score = node.get("score")
    return (score is None, -(score or 0.0), tree_order(node["id"]))


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
    results: list[ChatResult] = await asyncio.gather(
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


async def discover(caller: RoleCaller) -> Usage:
    """Learn whether the judge endpoint sends logprobs where that is not yet known
    (:meth:`Endpoint.discover_logprobs`): a run does it beside its drafts, so a principle
    judge on a server without them costs no extra round. Returns what the probe cost where
    this run made it, charged to the run's budget."""
    endpoint = await caller.endpoint("judge")
    if not isinstance(endpoint, Endpoint):
        return Usage()
    usage = await endpoint.discover_logprobs(await caller.model_name("judge"))
    caller.budget.charge(usage)
    return usage


async def score_candidate(
    kind: JudgeKind,
    caller: RoleCaller,
    conversation: Sequence[Mapping[str, Any]],
    text: str,
    templates: TemplateSet,
    *,
    index: int = 0,
    config: RunnableConfig | None = None,
    info: CallInfo | None = None,
) -> JudgeResult:
    """Score one candidate with a pointwise judge (``principle``, ``reward`` or ``llm``).

    ``config`` (the node's run configuration) reports a chat call to its callbacks.
    """
    if kind == "reward":
        score, usage, model = await caller.reward(
            [*conversation, {"role": "assistant", "content": text}]
        )
        return JudgeResult(score, usage, model=model)
    if kind == "function":
        return await _function(caller.settings("judge"), conversation, text)
    if kind == "verify":
        return await _verify(caller.settings("judge"), conversation, text)
    if kind == "combined":
        return await _combined(
            caller, conversation, text, templates, index=index, config=config, info=info
        )
    judging = _Judging(caller, conversation, text, templates, index, config, info)
    if kind == "llm":
        return await _rate(judging)
    if kind == "principle":
        return await _principles(judging)
    raise ValueError(f"judge kind {kind!r} does not score candidates one at a time")


# -- judges you plug in -------------------------------------------------------------------------

PairwiseFunction = Callable[[list[dict[str, Any]], str, str], "Any | Awaitable[Any]"]
"""A pairwise function judge (``kind = "pairwise"`` with ``function``): the conversation and
two candidates in; out, which is better (``"A"``, ``"B"``, or ``"C"`` for a tie) or a
preference score (above 0: the first is better, below 0: the second; 0: a tie)."""


def _preference(value: Any) -> float | None:
    """A pairwise function's verdict as points for its first candidate (None: unreadable)."""
    if isinstance(value, str):
        return {"A": 1.0, "B": -1.0, "C": 0.0, "TIE": 0.0}.get(value.strip().upper())
    if isinstance(value, bool):
        return None
    try:
        points = float(value)
    except (TypeError, ValueError):
        return None
    return math.copysign(1.0, points) if points else 0.0 if math.isfinite(points) else None


async def _function_match(
    path: str,
    conversation: Sequence[Mapping[str, Any]],
    a: tuple[str, str],
    b: tuple[str, str],
) -> tuple[tuple[str, str], Usage, str | None]:
    """A match judged by a pairwise function, in both orders as a model's is (so a function
    with a position bias cancels it too); ``a`` wins ties."""
    fn = resolve_function(path)
    said = []
    for first, second in ((a[1], b[1]), (b[1], a[1])):
        value = fn([dict(m) for m in conversation], first, second)
        if inspect.isawaitable(value):
            value = await value
        said.append(_preference(value))
    points = (said[0] or 0.0) - (said[1] or 0.0)
    note = None
    if None in said:
        note = f"{a[0]} vs {b[0]}: the judge function's verdict is unreadable, counted as a tie"
    return (b if points < 0 else a), Usage(), note


JudgeFunction = Callable[[list[dict[str, Any]], str], "float | Awaitable[float]"]
"""A function judge: the conversation (OpenAI-style messages) and a candidate's text in, a
score out (higher is better); a coroutine function is awaited."""

_FUNCTIONS: dict[str, Callable[..., Any]] = {}


def register_function(fn: Callable[..., Any]) -> str:
    """Keep ``fn`` for the ``function`` judge under its import path (``module:qualname``),
    which is what the run's settings carry (they stay plain data for checkpoints); returns it.
    """
    path = (
        f"{getattr(fn, '__module__', None) or '__main__'}:{getattr(fn, '__qualname__', repr(fn))}"
    )
    _FUNCTIONS[path] = fn
    return path


def resolve_function(path: str) -> Callable[..., Any]:
    """The function an import path ``module:function`` names (a registered one first).

    Raises:
        ConfigError: the path is malformed, the module cannot be imported, or it has no such
            callable.
    """
    found = _FUNCTIONS.get(path)
    if found is not None:
        return found
    module, sep, name = path.partition(":")
    if not sep or not module or not name:
        raise ConfigError(
            f"roles.judge.function {path!r} must be an import path 'module:function'",
            key="roles.judge.function",
        )
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"roles.judge.function {path!r} cannot be imported: {exc}",
            key="roles.judge.function",
        ) from None
    if not callable(obj):
        raise ConfigError(
            f"roles.judge.function {path!r} is not callable", key="roles.judge.function"
        )
    _FUNCTIONS[path] = obj
    return cast(Callable[..., Any], obj)


def check_judge(settings: RoleConfig) -> None:
    """Fail now, not mid-run, on a plug-in judge that lacks what it needs.

    Raises:
        ConfigError: ``function`` without an importable ``function``, ``verify`` without a
            readable ``questions`` file, ``combined`` without ``combine`` parts.
    """
    kinds = [settings.kind]
    if settings.kind == "combined":
        if not settings.combine:
            raise ConfigError(
                "roles.judge.kind 'combined' needs roles.judge.combine: a list of "
                "{kind, weight} parts",
                key="roles.judge.combine",
            )
        kinds = [p.kind for p in settings.combine_parts()]
    if settings.kind == "pairwise" and settings.function:
        resolve_function(settings.function)  # the pairwise form (see PairwiseFunction)
    if "function" in kinds:
        if not settings.function:
            raise ConfigError(
                "the function judge needs roles.judge.function ('module:function')",
                key="roles.judge.function",
            )
        resolve_function(settings.function)
    if "verify" in kinds:
        if not settings.questions:
            raise ConfigError(
                "the verify judge needs roles.judge.questions: an IFEval-format JSONL file",
                key="roles.judge.questions",
            )
        _questions(settings.questions)


async def _function(
    settings: RoleConfig, conversation: Sequence[Mapping[str, Any]], text: str
) -> JudgeResult:
    fn = resolve_function(settings.function or "")
    value = fn([dict(m) for m in conversation], text)
    if inspect.isawaitable(value):
        value = await value
    try:
        score = float(value)
    except (TypeError, ValueError):
        return JudgeResult(
            None, Usage(), note=f"the judge function returned {type(value).__name__}, not a number"
        )
    if not math.isfinite(score):
        return JudgeResult(None, Usage(), note=f"the judge function returned {score}")
    return JudgeResult(score, Usage())


@functools.lru_cache(maxsize=8)
def _questions(path: str) -> dict[str, Any]:
    from langgraph_feedit.evaluate.verify import read_ifeval_questions

    return {" ".join(q.prompt.split()): q for q in read_ifeval_questions(path)}


def _last_user(conversation: Sequence[Mapping[str, Any]]) -> str:
    from langgraph_feedit.prompts import _content_text

    for m in reversed(conversation):
        if m.get("role") == "user":
            return " ".join(_content_text(m.get("content")).split())
    return ""


async def _verify(
    settings: RoleConfig, conversation: Sequence[Mapping[str, Any]], text: str
) -> JudgeResult:
    """The share of the prompt's instructions the candidate follows (strict and loose
    averaged, in [0, 1]), by ``feedit verify``'s checkers; unscored for a prompt that is not
    in the questions file."""
    from langgraph_feedit.evaluate.verify import check_instructions

    question = _questions(settings.questions or "").get(_last_user(conversation))
    if question is None:
        return JudgeResult(None, Usage(), note="the prompt carries no instructions to verify")
    # The checkers are plain CPU work, milliseconds each: not worth a thread hop.
    checks = check_instructions(question, text)
    passed = sum(strict + loose for strict, loose in checks.values())
    return JudgeResult(passed / (2 * len(checks)), Usage())


async def _combined(
    caller: RoleCaller,
    conversation: Sequence[Mapping[str, Any]],
    text: str,
    templates: TemplateSet,
    *,
    index: int,
    config: RunnableConfig | None,
    info: CallInfo | None,
) -> JudgeResult:
    """The weighted sum of the parts' scores (unscored when any part is)."""
    parts = caller.settings("judge").combine_parts()
    results = await asyncio.gather(
        *(
            score_candidate(
                p.kind, caller, conversation, text, templates, index=index, config=config, info=info
            )
            for p in parts
        )
    )
    usage = sum((r.usage for r in results), Usage())
    notes = [f"{p.kind}: {r.note}" for p, r in zip(parts, results, strict=True) if r.note]
    scores = {p.kind: r.score for p, r in zip(parts, results, strict=True)}
    model_part = next((r for r in results if r.path is not None), None)
    total = (
        None
        if any(s is None for s in scores.values())
        else sum((r.score or 0.0) * p.weight for p, r in zip(parts, results, strict=True))
    )
    return JudgeResult(
        total,
        usage,
        note="; ".join(notes) or None,
        model=model_part.model if model_part else None,
        path=model_part.path if model_part else None,
        principle_scores=model_part.principle_scores if model_part else None,
        parts={k: v for k, v in scores.items() if v is not None},
    )


async def rank_round(
    kind: JudgeKind,
    caller: RoleCaller,
    conversation: Sequence[Mapping[str, Any]],
    candidates: Sequence[tuple[str, str]],
    templates: TemplateSet,
    *,
    config: RunnableConfig | None = None,
) -> RoundResult:
    """Score a set of ``(id, text)`` candidates with a comparing judge."""
    ordered = sorted(candidates, key=lambda c: tree_order(c[0]))
    if kind == "consensus":
        return RoundResult(consensus_scores(ordered))
    if kind == "pairwise":
        return await _knockout(caller, conversation, ordered, templates, config)
    raise ValueError(f"judge kind {kind!r} scores candidates one at a time")


_WORD = re.compile(r"\w+")


def _bigrams(text: str) -> set[tuple[str, str]]:
    words = _WORD.findall(text.lower())
    if len(words) < 2:
        return {(w, "") for w in words}
    return set(itertools.pairwise(words))


def consensus_scores(candidates: Sequence[tuple[str, str]]) -> dict[str, float]:
    """Mean word-bigram Jaccard similarity of each candidate to the others."""
    grams = [(cid, _bigrams(text)) for cid, text in candidates]
    if len(grams) == 1:
        return {grams[0][0]: 1.0}
    scores: dict[str, float] = {}
    for cid, g in grams:
        sims = []
        for other_id, h in grams:
            if other_id == cid:
                continue
            union = len(g | h)
            sims.append(len(g & h) / union if union else 1.0)
        scores[cid] = sum(sims) / len(sims)
    return scores


async def _knockout(
    caller: RoleCaller,
    conversation: Sequence[Mapping[str, Any]],
    candidates: Sequence[tuple[str, str]],
    templates: TemplateSet,
    config: RunnableConfig | None,
) -> RoundResult:
    wins = {cid: 0.0 for cid, _ in candidates}
    usage = Usage()
    notes: list[str] = []
    alive = list(candidates)
    match_index = 0
    while len(alive) > 1:
        pairs = [(alive[i], alive[i + 1]) for i in range(0, len(alive) - 1, 2)]
        bye = [alive[-1]] if len(alive) % 2 else []
        results = await asyncio.gather(
            *(
                _match(caller, conversation, a, b, templates, match_index + i, config)
                for i, (a, b) in enumerate(pairs)
            )
        )
        match_index += len(pairs)
        alive = []
        for winner, match_usage, note in results:
            usage = usage + match_usage
            if note:
                notes.append(note)
            wins[winner[0]] += 1.0
            alive.append(winner)
        alive.extend(bye)
    return RoundResult(wins, usage, notes)


async def _match(
    caller: RoleCaller,
    conversation: Sequence[Mapping[str, Any]],
    a: tuple[str, str],
    b: tuple[str, str],
    templates: TemplateSet,
    index: int,
    config: RunnableConfig | None,
) -> tuple[tuple[str, str], Usage, str | None]:
    """Judge ``a`` against ``b`` in both orders; ``a`` (first in tree order) wins ties."""
    function = caller.settings("judge").function
    if function:
        return await _function_match(function, conversation, a, b)
    info = CallInfo(role="judge", node_id=f"{a[0]} vs {b[0]}", kind="pairwise")
    first, second = await asyncio.gather(
        caller.complete(
            "judge",
            pairwise_messages(conversation, a[1], b[1], templates),
            index=2 * index,
            config=config,
            info=info,
        ),
        caller.complete(
            "judge",
            pairwise_messages(conversation, b[1], a[1], templates),
            index=2 * index + 1,
            config=config,
            info=info,
        ),
    )
    v1 = parse_pairwise(first.texts[0] if first.texts else "")
    v2 = parse_pairwise(second.texts[0] if second.texts else "")
    points = 0.0  # > 0: a is better
    points += {"A": 1.0, "B": -1.0}.get(v1 or "C", 0.0)
    points += {"A": -1.0, "B": 1.0}.get(v2 or "C", 0.0)
    note = None
    if v1 is None or v2 is None:
        note = f"{a[0]} vs {b[0]}: unparseable verdict counted as a tie"
    return (b if points < 0 else a), first.usage + second.usage, note
