"""Judges: one interface, four kinds.

- ``reward``: a reward-model endpoint (vLLM's pooling API) scores each candidate on its own,
  as the paper's Select model does. Scores are the model's raw rewards.
- ``llm``: a chat model rates each candidate against a rubric; the ``Score: N`` (1-10) it ends
  with is parsed from messy output and scaled to [0, 1].
- ``pairwise``: a knockout bracket; every match is judged twice with the positions swapped, so
  position bias cancels. A candidate's score is the number of matches it won.
- ``consensus``: no model; the candidate most similar to the others wins (mean word-bigram
  Jaccard similarity, in [0, 1]).

``reward`` and ``llm`` are pointwise: each candidate is scored the moment it exists, inside its
own branch. ``pairwise`` and ``consensus`` compare candidates, so they score a whole round.
Ties always go to the candidate that comes first in tree order.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig

from langgraph_feedit.calls import RoleCaller
from langgraph_feedit.config import JudgeKind
from langgraph_feedit.prompts import (
    TemplateSet,
    pairwise_messages,
    parse_pairwise,
    parse_score,
    rating_messages,
)
from langgraph_feedit.state import tree_order
from langgraph_feedit.tracing import CallInfo
from langgraph_feedit.usage import Usage

__all__ = [
    "POINTWISE",
    "JudgeResult",
    "RoundResult",
    "consensus_scores",
    "rank_key",
    "rank_round",
    "score_candidate",
]

POINTWISE: frozenset[str] = frozenset({"reward", "llm"})


@dataclass(slots=True)
class JudgeResult:
    score: float | None
    usage: Usage
    note: str | None = None
    model: str | None = None


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
    """Score one candidate with a pointwise judge (``reward`` or ``llm``).

    ``config`` (the node's run configuration) reports a chat call to its callbacks.
    """
    if kind == "reward":
        score, usage, model = await caller.reward(
            [*conversation, {"role": "assistant", "content": text}]
        )
        return JudgeResult(score, usage, model=model)
    if kind == "llm":
        result = await caller.complete(
            "judge",
            rating_messages(conversation, text, templates),
            index=index,
            config=config,
            info=info,
        )
        reply = result.texts[0] if result.texts else ""
        rating = parse_score(reply)
        note = None if rating is not None else f"no score found in judge reply: {reply[-200:]!r}"
        return JudgeResult(rating, result.usage, note=note, model=result.model)
    raise ValueError(f"judge kind {kind!r} does not score candidates one at a time")


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
