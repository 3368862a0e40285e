"""The branch subgraphs: one per draft, one per critique, one per edit.

Each branch is a subgraph sent with ``Send``, so it waits only for its own parent::

    draft_branch:    draft -> route -> judge, and critique_branch x critiques (together)
    critique_branch: critique -> route -> edit_branch x edits, or critique again (resample)
    edit_branch:     edit -> judge

With ``skip_perfect`` a critique that asks for no change is not effective: ``route`` sends the
critique node again for the same slot, with the next sample index, up to ``critique_samples``
samples; edits follow only an effective one. Judge, critique and edit calls that depend only on
a candidate's text are shared between identical candidates (see :mod:`langgraph_feedit.twins`).

Every call node has a LangGraph ``CachePolicy`` keyed by what determines the call: the role's
endpoint identity (base URL and model, never the key) and sampling settings, the exact request
content (conversation, parent, critique, template), the node's position in the tree (which
carries its sample index) and the run's cache key. A failed call raises, so LangGraph does not
cache it; the node's error handler records the failure in the tree and the branch ends there
(a failed judge leaves its candidate unscored; its critiques were already under way).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.cache.base import BaseCache
from langgraph.errors import NodeError
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import CachePolicy, Send
from typing_extensions import TypedDict

from langgraph_feedit._sync import both, inline
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
from langgraph_feedit.runs import ActiveRun, Operator, bound, find_run
from langgraph_feedit.state import NodeDict, RunSpec, keep_first, merge_nodes
from langgraph_feedit.tracing import CallInfo, emit
from langgraph_feedit.twins import normalise

__all__ = ["BranchState", "branch_graphs", "critique_slot"]


class Target(TypedDict):
    """The text a branch works on: a candidate to critique, or a critique to follow."""

    id: str
    text: str


class BranchOutput(TypedDict):
    feedit_nodes: Annotated[list[NodeDict], merge_nodes]


class BranchState(TypedDict, total=False):
    """A branch's private state: what it was sent, and what it has made so far.

    Every key has a reducer that keeps the first value: the values are set once per branch,
    and under ``astream_events`` LangGraph hands each child branch's whole state back to its
    parent, so parallel children write these keys in one step (see ``keep_first``).
    """

    feedit_nodes: Annotated[list[NodeDict], merge_nodes]
    # ``X | None`` (not ``X``): LangGraph starts a reducer channel at ``X()`` when it can,
    # which would be a first value of ``{}`` or ``0``; for a union it starts empty.
    spec: Annotated[RunSpec | None, keep_first]
    index: Annotated[int | None, keep_first]
    round: Annotated[int | None, keep_first]
    parent: Annotated[Target | None, keep_first]
    critique: Annotated[Target | None, keep_first]
    candidate: Annotated[Target | None, keep_first]


class NodeFailed(FeeditError):
    """A call node's call failed; ``node`` is the trace node recording why."""

    def __init__(self, node: NodeDict) -> None:
        self.node = node
        super().__init__(node.get("error") or node.get("judge_note"))


def _spec(state: BranchState) -> RunSpec:
    spec = state.get("spec")
    if spec is None:  # pragma: no cover - every Send carries one
        raise RuntimeError("a branch was sent without its run spec")
    return spec


def _run(op: Operator, state: BranchState, runtime: Runtime[Any]) -> ActiveRun:
    """The run a branch belongs to, resolved from the graph's configuration (the ``spec``
    a branch was sent names it; see :class:`~langgraph_feedit.runs.Operator`)."""
    return op.run(state.get("spec"), runtime.context)


def _templates(run: ActiveRun, role: str) -> TemplateSet:
    return load_templates(run.caller.settings(role).template)


def critique_slot(run: ActiveRun, index: int) -> tuple[int, int]:
    """The slot and sample of critique ``index``: sample ``s`` of slot ``j`` has index
    ``j + s * critiques``, so every sample has its own node id, seed and cache entry, and
    the first sample of each slot keeps the id it had before resampling existed."""
    per = max(1, run.config.width.critiques)
    return index % per, index // per


def _share_key(kind: str, text: str, index: int = 0, critique: str | None = None) -> str:
    """The content key of a call that identical candidates share (whitespace aside)."""
    parts = [kind, normalise(text), index, None if critique is None else normalise(critique)]
    return json.dumps(parts, ensure_ascii=False)


def _head(kind: str, state: BranchState) -> NodeDict:
    """The fixed part of a node: id, kind, parent, round and role, from the branch's input."""
    i = state.get("index") or 0
    if kind == "draft":
        return {"id": f"d{i}", "kind": "draft", "parent": None, "round": 0, "role": "draft"}
    if kind == "critique":
        parent = cast(Target, state["parent"])["id"]
        return {
            "id": f"{parent}.c{i}",
            "kind": "critique",
            "parent": parent,
            "round": (state.get("round") or 0),
            "role": "critique",
        }
    crit = cast(Target, state["critique"])["id"]
    return {
        "id": f"{crit}.e{i}",
        "kind": "edit",
        "parent": crit,
        "round": (state.get("round") or 0),
        "role": "edit",
    }


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
                "failure": failure_kind(exc),  # type: ignore[typeddict-item]
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
        runtime, config, _head("draft", state), run, run.conversation, index, answer=True
    )
    return {"feedit_nodes": [node], "candidate": {"id": node["id"], "text": node["text"]}}


async def critique(
    op: Operator, state: BranchState, runtime: Runtime[Any], config: RunnableConfig
) -> Any:
    """Critique one candidate: what is wrong, missing or could be better."""
    run = _run(op, state, runtime)
    parent = cast(Target, state["parent"])
    messages = critique_messages(run.conversation, parent["text"], _templates(run, "critique"))
    index = state.get("index") or 0
    share = _share_key("critique", parent["text"], index)
    node = await _call(runtime, config, _head("critique", state), run, messages, index, share)
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
    parent = cast(Target, state["parent"])
    crit = cast(Target, state["critique"])
    messages = edit_messages(
        run.conversation, parent["text"], crit["text"], _templates(run, "edit")
    )
    index = state.get("index") or 0
    share = _share_key("edit", parent["text"], index, crit["text"])
    node = await _call(
        runtime, config, _head("edit", state), run, messages, index, share, answer=True
    )
    # An edit is an answer: a preamble or closing note is cut, and a reply that is no answer
    # (to the editor, or the feedback restated) is a failed edit, never judged or selected.
    cleaned = clean_edit(
        node.get("text") or "",
        feedback=crit["text"],
        prompt=render_conversation(run.conversation),
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
        "judge_started": started,
        "judge_ended": time.time(),
    }
    if result.note:
        update["judge_note"] = result.note
    if result.path is not None:
        update["judge_path"] = result.path
    if result.principle_scores is not None:
        update["principle_scores"] = result.principle_scores
    if result.parts is not None:
        update["judge_parts"] = result.parts
    emit(runtime, "scored", {"id": cand["id"]}, score=result.score)
    return {"feedit_nodes": [update]}


def _recorded(state: BranchState, error: NodeError) -> dict[str, Any]:
    """Error handler of call nodes: keep the failure in the tree; the branch ends here."""
    if not isinstance(error.error, NodeFailed):
        raise error.error  # a bug, not a backend failure: fail the run loudly
    return {"feedit_nodes": [error.error.node], "candidate": None, "critique": None}


async def route(
    op: Operator, state: BranchState, runtime: Runtime[Any], config: RunnableConfig
) -> dict[str, Any]:
    """Where a branch goes next is decided here, in a node that is never cached.

    LangGraph caches a node's writes, and a conditional edge's ``Send`` packets are among
    them: routing straight from a cached call node would replay the fan-out of the run that
    filled the cache (its width, its budget) instead of deciding for this run. The run is
    resolved here too, for the edges after it (a cached call node resolves nothing).
    """
    _run(op, state, runtime)
    return {}


def _after_draft(state: BranchState) -> list[Send | str] | str:
    """The draft's judge and its critiques start together: a critique never waits for a
    score it does not need."""
    run = find_run(_spec(state))
    spec = run.spec
    cand = state.get("candidate")
    if not cand:
        return END
    nxt: list[Send | str] = ["judge"]
    if run.config.rounds and not run.budget.exhausted:
        nxt += [
            Send("critique_branch", {"spec": spec, "parent": cand, "round": 1, "index": j})
            for j in range(run.config.width.critiques)
        ]
    return nxt


def _resample(state: BranchState) -> list[Send] | str:
    """Send the critique node again for this slot when its last sample was not effective
    and the slot has samples left; otherwise the slot ends without edits."""
    run = find_run(_spec(state))
    spec = run.spec
    parent = cast(Target, state["parent"])
    mine = [
        n
        for n in state.get("feedit_nodes", [])
        if n.get("kind") == "critique" and n.get("parent") == parent["id"]
    ]
    if not mine:
        return END
    last = max(mine, key=lambda n: n.get("sample") or 0)
    if last.get("error") or last.get("effective") is not False:
        return END
    index = int(last["id"].rsplit(".", 1)[-1][1:])
    if critique_slot(run, index)[1] + 1 >= run.critique_samples:
        return END
    if run.budget.exhausted:
        return END
    payload = {
        "spec": spec,
        "parent": parent,
        "round": state.get("round") or 0,
        "index": index + max(1, run.config.width.critiques),
    }
    return [Send("critique", payload)]


def _fan_edits(state: BranchState) -> list[Send] | str:
    run = find_run(_spec(state))
    spec = run.spec
    crit = state.get("critique")
    if not crit:
        return _resample(state)
    if run.budget.exhausted:
        return END
    return [
        Send(
            "edit_branch",
            {
                "spec": spec,
                "parent": state["parent"],
                "critique": crit,
                "round": (state.get("round") or 0),
                "index": k,
            },
        )
        for k in range(run.config.width.edits)
    ]


# -- cache keys ---------------------------------------------------------------------------------


def _endpoint_identity(spec: RunSpec, role: str) -> dict[str, Any]:
    """What a role's calls depend on besides the request: the digest of its endpoint and the
    operator's settings for it, and the run's sampling settings and template."""
    # The judge's kind is keyed on its own (``judge``), as before the spec carried it here.
    tuned = {k: v for k, v in spec["roles"][role].items() if k != "kind"}
    return {"endpoint": spec["endpoints"][role], **tuned}


def _key(kind: str) -> Any:
    """The cache key function of one node kind (a JSON string LangGraph hashes)."""

    def key(state: BranchState) -> str:
        spec = _spec(state)
        payload: dict[str, Any] = {
            "node": kind,
            "conversation": spec["conversation"],
            "cache_key": spec["cache_key"],
        }
        if kind == "judge":
            cand: Mapping[str, Any] = state.get("candidate") or {}
            payload.update(
                endpoint=_endpoint_identity(spec, "judge"),
                judge=spec["roles"]["judge"].get("kind") or spec.get("judge"),
                trivial=spec["trivial"],
                id=cand.get("id"),
                text=cand.get("text"),
            )
        else:
            payload.update(endpoint=_endpoint_identity(spec, kind), id=_head(kind, state)["id"])
            if kind in ("draft", "edit") and spec.get("answer_schema") is not None:
                payload["answer_schema"] = spec.get("answer_schema")
            if kind in ("critique", "edit"):
                payload["parent"] = cast(Target, state["parent"])["text"]
            if kind == "edit":
                payload["critique"] = cast(Target, state["critique"])["text"]
        return json.dumps(payload, sort_keys=True, ensure_ascii=False)

    return key


def branch_graphs(op: Operator, cache: BaseCache[Any] | None = None) -> tuple[Any, Any, Any]:
    """The compiled per-draft, per-critique and per-edit subgraphs of one graph, whose nodes
    resolve their runs from ``op`` (the graph's configuration).

    ``cache`` is given to each subgraph's ``compile``: LangGraph does not hand a parent's
    cache down to its subgraphs, and the calls live in the subgraphs. With a cache the
    subgraphs keep no checkpoints of their own: every finished call is in the cache, so a
    resumed branch replays its calls from there, and a subgraph's checkpoint would only repeat
    them at the cost of a checkpoint read each time a branch starts (one per call, nearly). With
    none (LangGraph Server's graphs) they keep the parent's, so a resumed branch does not call
    again what it had done.
    """
    checkpointer = False if cache is not None else None

    def policy(kind: str) -> CachePolicy[Any] | None:
        # LangGraph computes a node's cache key whenever it has a policy, cache or none.
        return None if cache is None else CachePolicy(key_func=_key(kind))

    recorded: Any = inline(_recorded)
    # Routers run on the event loop (see ``inline``); edges are runs of their own, as LangGraph's.
    router, fan_edits, after_draft = (
        both(bound(op, route)),
        inline(_fan_edits, trace=True),
        inline(_after_draft, trace=True),
    )

    leaf = StateGraph(BranchState, output_schema=BranchOutput)
    leaf.add_node(
        "edit", both(bound(op, edit)), cache_policy=policy("edit"), error_handler=recorded
    )
    leaf.add_node(
        "judge", both(bound(op, judge)), cache_policy=policy("judge"), error_handler=recorded
    )
    leaf.add_edge(START, "edit")
    leaf.add_edge("edit", "judge")
    leaf.add_edge("judge", END)

    crit = StateGraph(BranchState, output_schema=BranchOutput)
    crit.add_node(
        "critique",
        both(bound(op, critique)),
        cache_policy=policy("critique"),
        error_handler=recorded,
    )
    crit.add_node("route", router)
    edit_branch = leaf.compile(name="edit_branch", cache=cache, checkpointer=checkpointer)
    crit.add_node("edit_branch", edit_branch)
    crit.add_edge(START, "critique")
    crit.add_edge("critique", "route")
    crit.add_conditional_edges("route", fan_edits, ["edit_branch", "critique", END])
    critique_branch = crit.compile(name="critique_branch", cache=cache, checkpointer=checkpointer)

    drafts = StateGraph(BranchState, output_schema=BranchOutput)
    drafts.add_node(
        "draft", both(bound(op, draft)), cache_policy=policy("draft"), error_handler=recorded
    )
    drafts.add_node(
        "judge", both(bound(op, judge)), cache_policy=policy("judge"), error_handler=recorded
    )
    drafts.add_node("route", router)
    drafts.add_node("critique_branch", critique_branch)
    drafts.add_edge(START, "draft")
    drafts.add_edge("draft", "route")
    drafts.add_conditional_edges("route", after_draft, ["judge", "critique_branch", END])
    drafts.add_edge("judge", END)
    draft_branch = drafts.compile(name="draft_branch", cache=cache, checkpointer=checkpointer)
    return draft_branch, critique_branch, edit_branch
