"""The branch subgraphs: one per draft, one per critique, one per edit.

Each branch is a subgraph sent with ``Send``, so it waits only for its own parent::

    draft_branch:    draft -> route -> judge, and critique_branch x critiques (together)
    critique_branch: critique -> route -> edit_branch x edits
    edit_branch:     edit -> judge

Every call node has a LangGraph ``CachePolicy`` keyed by what determines the call: the role's
endpoint identity (base URL and model, never the key) and sampling settings, the exact request
content (conversation, parent, critique, template), the node's position in the tree (which
carries its sample index) and the run's cache key. A failed call raises, so LangGraph does not
cache it; the node's error handler records the failure in the tree and the branch ends there
(a failed judge leaves its candidate unscored; its critiques were already under way).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, cast

from langgraph.cache.base import BaseCache
from langgraph.errors import NodeError
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import CachePolicy, Send
from typing_extensions import TypedDict

from langgraph_feedit.calls import BudgetExhausted, RoleCaller, run_budget
from langgraph_feedit.errors import EmbeddedError, EndpointError, EndpointTimeout
from langgraph_feedit.judges import POINTWISE, score_candidate
from langgraph_feedit.prompts import (
    TemplateSet,
    critique_messages,
    edit_messages,
    load_templates,
    parse_verdict,
)
from langgraph_feedit.state import merge_nodes

__all__ = ["BranchState", "branch_graphs", "emit", "failure_text", "rounds_enabled"]


class BranchOutput(TypedDict):
    feedit_nodes: Annotated[list[dict[str, Any]], merge_nodes]


class BranchState(TypedDict, total=False):
    """A branch's private state: what it was sent, and what it has made so far."""

    feedit_nodes: Annotated[list[dict[str, Any]], merge_nodes]
    feedit_run: dict[str, Any]
    index: int
    round: int
    parent: dict[str, Any] | None
    critique: dict[str, Any] | None
    candidate: dict[str, Any] | None


class NodeFailed(Exception):
    """A call node's call failed; ``node`` is the trace node recording why."""

    def __init__(self, node: dict[str, Any]) -> None:
        self.node = node
        super().__init__(node.get("error") or node.get("judge_note"))


def emit(runtime: Runtime[Any], event: str, node: Mapping[str, Any], **extra: Any) -> None:
    """A progress event on ``stream_mode="custom"`` (a no-op when nobody listens)."""
    payload = {
        "event": event,
        "id": node.get("id"),
        "kind": node.get("kind"),
        "round": node.get("round"),
        **extra,
    }
    runtime.stream_writer({"feedit": payload})


def rounds_enabled(run: Mapping[str, Any]) -> bool:
    return bool(run["depth"]["max_rounds"] >= 1 and run["width"]["critiques"] >= 1)


def failure_text(exc: BaseException) -> str:
    if isinstance(exc, BudgetExhausted):
        return f"stopped: {exc.reason} reached"
    return str(exc)


def failure_kind(exc: BaseException) -> str:
    """What kind of failure ended a call: ``deadline`` or ``budget`` (the run ran out),
    ``timeout`` (the endpoint never answered in time) or ``backend`` (it answered an error)."""
    if isinstance(exc, BudgetExhausted):
        return exc.reason
    if isinstance(exc, EndpointTimeout):
        return "timeout"
    return "backend"


def _templates(run: Mapping[str, Any], role: str) -> TemplateSet:
    return load_templates(run["roles"][role].get("template"))


def _head(kind: str, state: BranchState) -> dict[str, Any]:
    """The fixed part of a node: id, kind, parent, round and role, from the branch's input."""
    i = state.get("index", 0)
    if kind == "draft":
        return {"id": f"d{i}", "kind": "draft", "parent": None, "round": 0, "role": "draft"}
    if kind == "critique":
        parent = cast(dict[str, Any], state["parent"])["id"]
        return {
            "id": f"{parent}.c{i}",
            "kind": "critique",
            "parent": parent,
            "round": state["round"],
            "role": "critique",
        }
    crit = cast(dict[str, Any], state["critique"])["id"]
    return {
        "id": f"{crit}.e{i}",
        "kind": "edit",
        "parent": crit,
        "round": state["round"],
        "role": "edit",
    }


async def _call(
    runtime: Runtime[Any],
    node: dict[str, Any],
    run: Mapping[str, Any],
    messages: Sequence[Mapping[str, Any]],
    index: int,
) -> dict[str, Any]:
    """Make one node's call and fill in its text, model, usage and timings.

    Raises:
        NodeFailed: the call failed after retries, or the deadline or budget ran out.
    """
    node["started"] = time.time()
    emit(runtime, "started", node)
    try:
        result = await RoleCaller(run).complete(node["role"], messages, index=index)
    except (EndpointError, EmbeddedError, BudgetExhausted) as exc:
        # A backend failure ends this branch only; a user's mistake (a missing key
        # variable, a bad template file) propagates and fails the run, saying so.
        node.update(error=failure_text(exc), failure=failure_kind(exc), ended=time.time())
        emit(runtime, "failed", node, error=node["error"])
        raise NodeFailed(node) from exc
    node.update(
        text=result.texts[0],
        model=result.model,
        usage=result.usage.as_dict(),
        ended=time.time(),
        origin=run["key"],
    )
    emit(runtime, "done", node, tokens=result.usage.total_tokens)
    return node


# -- nodes --------------------------------------------------------------------------------------


async def draft(state: BranchState, runtime: Runtime[Any]) -> dict[str, Any]:
    """Sample one draft of the conversation."""
    run = state["feedit_run"]
    node = await _call(runtime, _head("draft", state), run, run["conversation"], state["index"])
    return {"feedit_nodes": [node], "candidate": {"id": node["id"], "text": node["text"]}}


async def critique(state: BranchState, runtime: Runtime[Any]) -> dict[str, Any]:
    """Critique one candidate: what is wrong, missing or could be better."""
    run = state["feedit_run"]
    parent = cast(dict[str, Any], state["parent"])
    messages = critique_messages(run["conversation"], parent["text"], _templates(run, "critique"))
    node = await _call(runtime, _head("critique", state), run, messages, state["index"])
    node["verdict"] = parse_verdict(node["text"])
    if run["depth"].get("skip_perfect") and node["verdict"] == "perfectly":
        node["skipped"] = "perfect"
    return {"feedit_nodes": [node], "critique": None if node.get("skipped") else node}


async def edit(state: BranchState, runtime: Runtime[Any]) -> dict[str, Any]:
    """Revise a candidate according to one critique."""
    run = state["feedit_run"]
    parent = cast(dict[str, Any], state["parent"])
    crit = cast(dict[str, Any], state["critique"])
    messages = edit_messages(
        run["conversation"], parent["text"], crit["text"], _templates(run, "edit")
    )
    node = await _call(runtime, _head("edit", state), run, messages, state["index"])
    return {"feedit_nodes": [node], "candidate": {"id": node["id"], "text": node["text"]}}


async def judge(state: BranchState, runtime: Runtime[Any]) -> dict[str, Any]:
    """Score the branch's candidate the moment it exists (pointwise judges only)."""
    run = state["feedit_run"]
    cand = state.get("candidate")
    if not cand or run["judge"] not in POINTWISE or run["trivial"]:
        return {}
    try:
        result = await score_candidate(
            run["judge"],
            RoleCaller(run),
            run["conversation"],
            cand["text"],
            _templates(run, "judge"),
            index=state.get("index", 0),
        )
    except (EndpointError, EmbeddedError, BudgetExhausted) as exc:
        note = {"id": cand["id"], "judge_note": f"not scored: {failure_text(exc)}"}
        emit(runtime, "scored", note, score=None, error=note["judge_note"])
        raise NodeFailed(note) from exc
    update: dict[str, Any] = {
        "id": cand["id"],
        "score": result.score,
        "judge_usage": result.usage.as_dict(),
        "judge_origin": run["key"],
    }
    if result.note:
        update["judge_note"] = result.note
    emit(runtime, "scored", {"id": cand["id"]}, score=result.score)
    return {"feedit_nodes": [update]}


def _recorded(state: BranchState, error: NodeError) -> dict[str, Any]:
    """Error handler of call nodes: keep the failure in the tree; the branch ends here."""
    if not isinstance(error.error, NodeFailed):
        raise error.error  # a bug, not a backend failure: fail the run loudly
    return {"feedit_nodes": [error.error.node], "candidate": None, "critique": None}


def route(state: BranchState) -> dict[str, Any]:
    """Where a branch goes next is decided here, in a node that is never cached.

    LangGraph caches a node's writes, and a conditional edge's ``Send`` packets are among
    them: routing straight from a cached call node would replay the fan-out of the run that
    filled the cache (its width, its budget) instead of deciding for this run.
    """
    return {}


def _after_draft(state: BranchState) -> list[Send | str] | str:
    """The draft's judge and its critiques start together: a critique never waits for a
    score it does not need."""
    run = state["feedit_run"]
    cand = state.get("candidate")
    if not cand:
        return END
    nxt: list[Send | str] = ["judge"]
    if rounds_enabled(run) and not run_budget(run).exhausted:
        nxt += [
            Send(
                "critique_branch",
                {"feedit_run": run, "parent": cand, "round": 1, "index": j},
            )
            for j in range(run["width"]["critiques"])
        ]
    return nxt


def _fan_edits(state: BranchState) -> list[Send] | str:
    run = state["feedit_run"]
    crit = state.get("critique")
    if not crit or run_budget(run).exhausted:
        return END
    return [
        Send(
            "edit_branch",
            {
                "feedit_run": run,
                "parent": state["parent"],
                "critique": {"id": crit["id"], "text": crit["text"]},
                "round": state["round"],
                "index": k,
            },
        )
        for k in range(run["width"]["edits"])
    ]


# -- cache keys ---------------------------------------------------------------------------------

_CALL_SETTINGS = (
    "base_url",
    "model",
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "stop",
    "extra_body",
    "template",
    "kind",
)


def _endpoint_identity(run: Mapping[str, Any], role: str) -> dict[str, Any]:
    settings = run["roles"][role]
    ident = {k: settings.get(k) for k in _CALL_SETTINGS}
    if not ident["base_url"]:
        ident["base_url"] = f"embedded:{run.get('embedded_model') or 'default'}"
    return ident


def _key(kind: str) -> Any:
    """The cache key function of one node kind (a JSON string LangGraph hashes)."""

    def key(state: BranchState) -> str:
        run = state["feedit_run"]
        payload: dict[str, Any] = {
            "node": kind,
            "conversation": run["conversation"],
            "cache_key": run.get("cache_key", ""),
        }
        if kind == "judge":
            cand = state.get("candidate") or {}
            payload.update(
                endpoint=_endpoint_identity(run, "judge"),
                judge=run["judge"],
                trivial=run["trivial"],
                id=cand.get("id"),
                text=cand.get("text"),
            )
        else:
            payload.update(endpoint=_endpoint_identity(run, kind), id=_head(kind, state)["id"])
            if kind in ("critique", "edit"):
                payload["parent"] = cast(dict[str, Any], state["parent"])["text"]
            if kind == "edit":
                payload["critique"] = cast(dict[str, Any], state["critique"])["text"]
        return json.dumps(payload, sort_keys=True, ensure_ascii=False)

    return key


def branch_graphs(cache: BaseCache[Any] | None = None) -> tuple[Any, Any]:
    """The compiled per-draft and per-critique subgraphs.

    ``cache`` is given to each subgraph's ``compile``: LangGraph does not hand a parent's
    cache down to its subgraphs, and the calls live in the subgraphs.
    """

    def policy(kind: str) -> CachePolicy[Any]:
        return CachePolicy(key_func=_key(kind))

    leaf = StateGraph(BranchState, output_schema=BranchOutput)
    leaf.add_node("edit", edit, cache_policy=policy("edit"), error_handler=_recorded)
    leaf.add_node("judge", judge, cache_policy=policy("judge"), error_handler=_recorded)
    leaf.add_edge(START, "edit")
    leaf.add_edge("edit", "judge")
    leaf.add_edge("judge", END)

    crit = StateGraph(BranchState, output_schema=BranchOutput)
    crit.add_node("critique", critique, cache_policy=policy("critique"), error_handler=_recorded)
    crit.add_node("route", route)
    crit.add_node("edit_branch", leaf.compile(name="edit_branch", cache=cache))
    crit.add_edge(START, "critique")
    crit.add_edge("critique", "route")
    crit.add_conditional_edges("route", _fan_edits, ["edit_branch", END])
    critique_branch = crit.compile(name="critique_branch", cache=cache)

    drafts = StateGraph(BranchState, output_schema=BranchOutput)
    drafts.add_node("draft", draft, cache_policy=policy("draft"), error_handler=_recorded)
    drafts.add_node("judge", judge, cache_policy=policy("judge"), error_handler=_recorded)
    drafts.add_node("route", route)
    drafts.add_node("critique_branch", critique_branch)
    drafts.add_edge(START, "draft")
    drafts.add_edge("draft", "route")
    drafts.add_conditional_edges("route", _after_draft, ["judge", "critique_branch", END])
    drafts.add_edge("judge", END)
    return drafts.compile(name="draft_branch", cache=cache), critique_branch
