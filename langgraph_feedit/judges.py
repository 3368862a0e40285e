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
  (``judge_path``) and why (``judge_note``). Whether the endpoint sends logprobs is learnt
  beside a run's drafts (a one-token probe, once per endpoint: :func:`discover`), so a
  server without them costs no extra round.
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

The kinds live by family (``_model_judges``: principle and llm; ``_plugin_judges``: function
and verify; ``_round_judges``: pairwise and consensus); this module dispatches among them and
is where every public name is imported from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig

from langgraph_feedit._gather import all_or_cancel
from langgraph_feedit._model_judges import (
    TOP_LOGPROBS,
    JudgeResult,
    _Judging,
    _principles,
    _rate,
    discover,
    reads_logprobs,
    yes_no_margin,
)
from langgraph_feedit._model_judges import _says_yes_no as _says_yes_no
from langgraph_feedit._plugin_judges import (
    JudgeFunction,
    PairwiseFunction,
    _function,
    _verify,
    check_judge,
    register_function,
    resolve_function,
)
from langgraph_feedit._round_judges import RoundResult, consensus_scores, rank_round
from langgraph_feedit.calls import RoleCaller
from langgraph_feedit.config import JudgeKind
from langgraph_feedit.nodeid import order
from langgraph_feedit.prompts import TemplateSet
from langgraph_feedit.state import JudgePath
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


def rank_key(node: Mapping[str, Any]) -> tuple[bool, float, tuple[tuple[str, int], ...]]:
    """How candidates rank: highest score first, unscored last, ties to the earliest in tree
    order. The answer is the first; the next round and the door's ``n`` choices follow it."""
    score = node.get("score")
    return (score is None, -(score or 0.0), order(node["id"]))


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
    results = await all_or_cancel(
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
