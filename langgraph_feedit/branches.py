"""The call nodes of the branch subgraphs: draft, critique, edit and judge.

Each branch is a subgraph sent with ``Send``, so it waits only for its own parent::

    draft_branch:    draft -> route -> judge, and critique_branch x critiques (together)
    critique_branch: critique -> route -> edit_branch x edits, or critique again (resample)
    edit_branch:     edit -> judge

With ``skip_perfect`` a critique that asks for no change is not effective: ``route`` sends the
critique node again for the same slot, with the next sample index, up to ``critique_samples``
samples; edits follow only an effective one. Judge, critique and edit calls that depend only on
a candidate's text are shared between identical candidates (see :mod:`langgraph_feedit.twins`).

The subgraphs, their routing edges and cache keys are built in :mod:`langgraph_feedit.subgraphs`.
Every call node has a LangGraph ``CachePolicy`` keyed by what determines the call: the role's
endpoint identity (base URL and model, never the key) and sampling settings, the exact request
content (conversation, parent, critique, template), the node's position in the tree (which
carries its sample index) and the run's cache key. A failed call raises, so LangGraph does not
cache it; the node's error handler records the failure in the tree and the branch ends there
(a failed judge leaves its candidate unscored, with ``judge_failure`` saying why; its critiques
were already under way).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.errors import NodeError
from langgraph.runtime import Runtime

from langgraph_feedit.calls import BudgetExhausted, failure_kind, failure_text
from langgraph_feedit.errors import ConfigError, EmbeddedError, EndpointError, FeeditError
from langgraph_feedit.judges import POINTWISE, score_candidate
from langgraph_feedit.prompts import (
    TemplateSet,
    asks_no_change,
    critique_messages,
    edit_messages,
    load_templates,
    parse_critique_verdict,
    render_conversation,
)
from langgraph_feedit.prompts.answers import clean_edit
from langgraph_feedit.runs import ActiveRun, Operator
from langgraph_feedit.state import NodeDict
from langgraph_feedit.tasks import BranchState, critique_slot, head, target_of
from langgraph_feedit.tracing import CallInfo, emit
from langgraph_feedit.twins import normalise

__all__ = [
    "BranchState",
    "critique",
    "critique_slot",
    "draft",
    "edit",
    "judge",
    "recorded",
    "route",
]


class NodeFailed(FeeditError):
    """A call node's call failed; ``node`` is the trace node recording why."""

    def __init__(self, node: NodeDict) -> None:
        self.node = node
        super().__init__(node.get("error") or node.get("judge_note"))


def _run(op: Operator, state: BranchState, runtime: Runtime[Any]) -> ActiveRun:
    """The run a branch belongs to, resolved from the graph's configuration (the ``spec``
    a branch was sent names it; see :class:`~langgraph_feedit.runs.Operator`)."""
    return op.run(state.get("spec"), runtime.context)


def _templates(run: ActiveRun, role: str) -> TemplateSet:
    return load_templates(run.caller.settings(role).template)


def _share_key(kind: str, text: str, index: int = 0, critique: str | None = None) -> str:
    """The content key of a call that identical candidates share (whitespace aside)."""
    parts = [kind, normalise(text), index, None if critique is None else normalise(critique)]
    return json.dumps(parts, ensure_ascii=False)


async def _call(
    runtime: Runtime[Any],
    config: RunnableConfig,
    node: NodeDict,
    run: ActiveRun,
    messages: Sequence[Mapping[str, Any]],
    index: int,
    share: str | None = None,
    answer: bool = False,
) -> NodeDict:
    """Make one node's call and fill in its text, model, usage and timings.

    ``share``: the call's content key; an identical candidate's branch asking with the same
    key gets this call's result instead of making another (see :mod:`langgraph_feedit.twins`).
    ``answer``: the call makes a candidate (a draft or an edit), constrained by the run's
    ``answer_schema`` when it has one.

    Raises:
        NodeFailed: the call failed after retries, or the deadline or budget ran out.
    """
    node["started"] = time.time()
    emit(runtime, "started", node)
    info = CallInfo(
        role=node["role"],
        node_id=node["id"],
        kind=node["kind"],
        round=node["round"],
        run_key=run.key,
        attempt=run.attempt,
    )

    schema = run.config.answer_schema if answer else None

    async def make() -> Any:
        result = await run.caller.complete(
            node["role"], messages, index=index, config=config, info=info, json_schema=schema
        )
        if schema is not None:
            await _check_structured(run, node["role"], result)
        return result

    try:
        if share is None:
            result = await make()
        else:
            result, _ = await run.shared.once(share, make)
            # Nodes with one call share this mark; ``finish`` counts the call once.
            node["share"] = hashlib.sha1(share.encode()).hexdigest()[:16]
    except (EndpointError, EmbeddedError, BudgetExhausted) as exc:
        # A backend failure ends this branch only; a user's mistake (a missing key
        # variable, a bad template file) propagates and fails the run, saying so.
        node.update(
            {
                "error": failure_text(exc),
                "failure": failure_kind(exc),
                "ended": time.time(),
                "attempt": run.attempt,
            }
        )
        emit(runtime, "failed", node, error=node["error"])
        raise NodeFailed(node) from exc
    node.update(
        {
            "text": result.texts[0],
            "reasoning": result.reasonings[0] if result.reasonings else None,
            "model": result.model,
            "usage": result.usage.as_dict(),
            "ended": time.time(),
            "origin": run.attempt,
            "finish_reason": result.finish_reasons[0] if result.finish_reasons else None,
            # A resumed retry replaces an earlier attempt's failure (nodes merge by field).
            "error": None,
            "failure": None,
        }
    )
    emit(runtime, "done", node, tokens=result.usage.total_tokens)
    return node


async def _check_structured(run: ActiveRun, role: str, result: Any) -> None:
    """A structured answer is one the server constrained by the schema and that parses.

    Raises:
        ConfigError: the role's endpoint or chat model cannot constrain output by a JSON
            schema, so the structured output asked for cannot be honoured.
        EndpointError: the reply is not JSON (it ends this branch, as a failed call).
    """
    if result.json_mode is None:
        backend = await run.caller.endpoint(role)
        raise ConfigError(
            f"structured output cannot be honoured: the {role} role's "
            f"{backend.label(result.model)} does not constrain replies by a JSON schema "
            "(response_format json_schema): give the role a server or chat model that does",
            key=f"roles.{role}",
        )
    try:
        json.loads(result.texts[0] if result.texts else "")
    except ValueError:
        raise EndpointError(
            "the reply is not the JSON its schema asks for",
            endpoint=(await run.caller.endpoint(role)).label(result.model),
            role=role,
            status=200,
        ) from None


# -- nodes --------------------------------------------------------------------------------------


async def draft(
    op: Operator, state: BranchState, runtime: Runtime[Any], config: RunnableConfig
) -> Any:
    """Sample one draft of the conversation."""
    run = _run(op, state, runtime)
    index = state.get("index") or 0
    node = await _call(
        runtime, config, head("draft", state), run, run.conversation, index, answer=True
    )
    return {"feedit_nodes": [node], "candidate": {"id": node["id"], "text": node["text"]}}


async def critique(
    op: Operator, state: BranchState, runtime: Runtime[Any], config: RunnableConfig
) -> Any:
    """Critique one candidate: what is wrong, missing or could be better."""
    run = _run(op, state, runtime)
    parent = target_of(state, "parent")
    messages = critique_messages(run.conversation, parent["text"], _templates(run, "critique"))
    index = state.get("index") or 0
    share = _share_key("critique", parent["text"], index)
    node = await _call(runtime, config, head("critique", state), run, messages, index, share)
    text = node.get("text") or ""
    node["verdict"] = parse_critique_verdict(text)
    node["sample"] = critique_slot(run, state.get("index") or 0)[1]
    node["effective"] = not (run.config.depth.skip_perfect and asks_no_change(text))
    if not node["effective"]:
        node["skipped"] = "perfect"
    target = {"id": node["id"], "text": text} if node["effective"] else None
    return {"feedit_nodes": [node], "critique": target}


async def edit(
    op: Operator, state: BranchState, runtime: Runtime[Any], config: RunnableConfig
) -> Any:
    """Revise a candidate according to one critique."""
    run = _run(op, state, runtime)
    parent = target_of(state, "parent")
    crit = target_of(state, "critique")
    messages = edit_messages(
        run.conversation, parent["text"], crit["text"], _templates(run, "edit")
    )
    index = state.get("index") or 0
    share = _share_key("edit", parent["text"], index, crit["text"])
    node = await _call(
        runtime, config, head("edit", state), run, messages, index, share, answer=True
    )
    # An edit is an answer: a preamble or closing note is cut, and a reply that is no answer
    # (to the editor, or the feedback restated) is a failed edit, never judged or selected.
    cleaned = clean_edit(
        node.get("text") or "",
        feedback=crit["text"],
        prompt=render_conversation(run.conversation),
        draft=parent["text"],
    )
    node["text"] = cleaned.text
    if cleaned.cut:
        node["cut"] = list(cleaned.cut)
    if cleaned.rejected is not None:
        node.update({"error": f"not an answer: {cleaned.rejected}", "failure": "not_an_answer"})
        emit(runtime, "failed", node, error=node["error"])
        return {"feedit_nodes": [node], "candidate": None}
    return {"feedit_nodes": [node], "candidate": {"id": node["id"], "text": node["text"]}}


async def judge(
    op: Operator, state: BranchState, runtime: Runtime[Any], config: RunnableConfig
) -> Any:
    """Score the branch's candidate the moment it exists (pointwise judges only)."""
    run = _run(op, state, runtime)
    cand = state.get("candidate")
    if not cand or run.judge not in POINTWISE or run.config.trivial:
        return {}

    def make() -> Any:
        return score_candidate(
            run.judge,
            run.caller,
            run.conversation,
            cand["text"],
            _templates(run, "judge"),
            index=(state.get("index") or 0),
            config=config,
            info=CallInfo(role="judge", node_id=cand["id"], kind="judge", round=state.get("round")),
        )

    started = time.time()
    try:
        # A pointwise score depends on the text alone: an identical candidate's is reused.
        result, _ = await run.shared.once(_share_key("judge", cand["text"]), make)
    except (EndpointError, EmbeddedError, BudgetExhausted) as exc:
        note: NodeDict = {
            "id": cand["id"],
            "judge_note": f"not scored: {failure_text(exc)}",
            "judge_path": "unscored",
            "judge_failure": failure_kind(exc),
            "judge_started": started,
            "judge_ended": time.time(),
        }
        emit(runtime, "scored", note, score=None, error=note["judge_note"])
        raise NodeFailed(note) from exc
    update: NodeDict = {
        "id": cand["id"],
        "score": result.score,
        "judge_usage": result.usage.as_dict(),
        "judge_origin": run.attempt,
        # A resumed retry replaces an earlier attempt's failure and its note (nodes merge by
        # field).
        "judge_failure": None,
        "judge_note": result.note or None,
        "judge_started": started,
        "judge_ended": time.time(),
    }
    if result.path is not None:
        update["judge_path"] = result.path
    if result.principle_scores is not None:
        update["principle_scores"] = result.principle_scores
    if result.parts is not None:
        update["judge_parts"] = result.parts
    emit(runtime, "scored", {"id": cand["id"]}, score=result.score)
    return {"feedit_nodes": [update]}


def recorded(state: BranchState, error: NodeError) -> BranchState:
    """Error handler of call nodes: keep the failure in the tree; the branch ends here."""
    if not isinstance(error.error, NodeFailed):
        raise error.error  # a bug, not a backend failure: fail the run loudly
    return {"feedit_nodes": [error.error.node], "candidate": None, "critique": None}


async def route(
    op: Operator, state: BranchState, runtime: Runtime[Any], config: RunnableConfig
) -> BranchState:
    """Where a branch goes next is decided here, in a node that is never cached.

    LangGraph caches a node's writes, and a conditional edge's ``Send`` packets are among
    them: routing straight from a cached call node would replay the fan-out of the run that
    filled the cache (its width, its budget) instead of deciding for this run. The run is
    resolved here too, for the edges after it (a cached call node resolves nothing).
    """
    _run(op, state, runtime)
    return {}
