"""Judges that compare the candidates of a round: ``pairwise`` (a knockout bracket, each
match judged in both orders) and ``consensus`` (the candidate most like the others).
See :mod:`.judges`."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig

from langgraph_feedit._gather import all_or_cancel
from langgraph_feedit._plugin_judges import _function_match
from langgraph_feedit.calls import RoleCaller
from langgraph_feedit.config import JudgeKind
from langgraph_feedit.nodeid import order
from langgraph_feedit.prompts import (
    TemplateSet,
    pairwise_messages,
    parse_pairwise,
)
from langgraph_feedit.tracing import CallInfo
from langgraph_feedit.usage import Usage


@dataclass(slots=True)
class RoundResult:
    scores: dict[str, float]
    usage: Usage = field(default_factory=Usage)
    notes: list[str] = field(default_factory=list)


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
    ordered = sorted(candidates, key=lambda c: order(c[0]))
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
        results = await all_or_cancel(
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
    first, second = await all_or_cancel(
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
