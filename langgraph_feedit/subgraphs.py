"""The branch subgraphs: their routing edges, cache keys, and the builder.

One subgraph per draft, one per critique, one per edit (the call nodes are in
:mod:`langgraph_feedit.branches`); each is sent with ``Send`` and a typed task of
:mod:`langgraph_feedit.tasks`, so it waits only for its own parent::

    draft_branch:    draft -> route -> judge, and critique_branch x critiques (together)
    critique_branch: critique -> route -> edit_branch x edits, or critique again (resample)
    edit_branch:     edit -> judge
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from langgraph.cache.base import BaseCache
from langgraph.graph import END, START, StateGraph
from langgraph.types import CachePolicy, Send
from typing_extensions import TypedDict

from langgraph_feedit import nodeid
from langgraph_feedit._sync import both, inline
from langgraph_feedit.branches import critique, draft, edit, judge, recorded, route
from langgraph_feedit.names import RunRoleName
from langgraph_feedit.prompts import BUILTIN_TEMPLATES, template_digest
from langgraph_feedit.prompts.answers import EDIT_RULE_VERSION
from langgraph_feedit.runs import Operator, bound, find_run, malformed_spec
from langgraph_feedit.state import NodeDict, RunSpec, merge_nodes
from langgraph_feedit.tasks import (
    BranchState,
    critique_slot,
    critique_task,
    edit_task,
    head,
    target_of,
)

__all__ = ["branch_graphs"]


class BranchOutput(TypedDict):
    feedit_nodes: Annotated[list[NodeDict], merge_nodes]


def _spec(state: BranchState) -> RunSpec:
    spec = state.get("spec")
    if spec is None:  # pragma: no cover - every Send carries one
        raise RuntimeError("a branch was sent without its run spec")
    return spec


# -- routing ------------------------------------------------------------------------------------


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
            Send("critique_branch", critique_task(spec, cand, 1, j))
            for j in range(run.config.width.critiques)
        ]
    return nxt


def _resample(state: BranchState) -> list[Send] | str:
    """Send the critique node again for this slot when its last sample was not effective
    and the slot has samples left; otherwise the slot ends without edits."""
    run = find_run(_spec(state))
    spec = run.spec
    parent = target_of(state, "parent")
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
    index = nodeid.index(last["id"])
    if critique_slot(run, index)[1] + 1 >= run.critique_samples:
        return END
    if run.budget.exhausted:
        return END
    task = critique_task(
        spec, parent, state.get("round") or 0, index + max(1, run.config.width.critiques)
    )
    return [Send("critique", task)]


def _fan_edits(state: BranchState) -> list[Send] | str:
    run = find_run(_spec(state))
    spec = run.spec
    crit = state.get("critique")
    if not crit:
        return _resample(state)
    if run.budget.exhausted:
        return END
    parent, rnd = target_of(state, "parent"), state.get("round") or 0
    return [
        Send("edit_branch", edit_task(spec, parent, crit, rnd, k))
        for k in range(run.config.width.edits)
    ]


# -- cache keys ---------------------------------------------------------------------------------


def _endpoint_identity(spec: RunSpec, role: str) -> dict[str, Any]:
    """What a role's calls depend on besides the request: the digest of its endpoint and the
    operator's settings for it, and the run's sampling settings and template."""
    # The judge's kind is keyed on its own (``judge``), as before the spec carried it here.
    tuned = {k: v for k, v in spec["roles"][role].items() if k != "kind"}
    return {"endpoint": spec["endpoints"][role], **tuned}


def _key(kind: nodeid.NodeKind | Literal["judge"], op: Operator) -> Any:
    """The cache key function of one node kind (a JSON string LangGraph hashes)."""

    def prompts(spec: RunSpec, role: RunRoleName) -> str:
        # The text of the template set the call is written with, not its name alone: a
        # changed built-in set or template file must not be answered from a cache filled
        # with the old prompts. A run may choose a built-in set, nothing else: the key is
        # made before the node checks its spec, so no other value of it is ever read here
        # (a forged state must not make the process open a file of its choosing).
        given = spec["roles"][role].get("template")
        name = given if given in BUILTIN_TEMPLATES else op.config.role(role).template
        return template_digest(name)

    def key(state: BranchState) -> str:
        try:
            return make(state)
        except (KeyError, TypeError, AttributeError, ValueError, RuntimeError):
            # What the node itself would say of the spec, before it runs (see ``Operator``).
            raise malformed_spec() from None

    def make(state: BranchState) -> str:
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
                prompts=prompts(spec, "judge"),
                judge=spec["roles"]["judge"].get("kind") or spec.get("judge"),
                trivial=spec["trivial"],
                id=cand.get("id"),
                text=cand.get("text"),
            )
        else:
            payload.update(endpoint=_endpoint_identity(spec, kind), id=head(kind, state)["id"])
            if kind in ("draft", "edit") and spec.get("answer_schema") is not None:
                payload["answer_schema"] = spec.get("answer_schema")
            if kind in ("critique", "edit"):
                payload["prompts"] = prompts(spec, kind)
                payload["parent"] = target_of(state, "parent")["text"]
            if kind == "edit":
                payload["critique"] = target_of(state, "critique")["text"]
                # An edit is cached as the rule left it (cut, or rejected as no answer).
                payload["rule"] = EDIT_RULE_VERSION
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

    def policy(kind: nodeid.NodeKind | Literal["judge"]) -> CachePolicy[Any] | None:
        # LangGraph computes a node's cache key whenever it has a policy, cache or none.
        return None if cache is None else CachePolicy(key_func=_key(kind, op))

    handler: Any = inline(recorded)
    # Routers run on the event loop (see ``inline``); edges are runs of their own, as LangGraph's.
    router, fan_edits, after_draft = (
        both(bound(op, route)),
        inline(_fan_edits, trace=True),
        inline(_after_draft, trace=True),
    )

    leaf = StateGraph(BranchState, output_schema=BranchOutput)
    leaf.add_node("edit", both(bound(op, edit)), cache_policy=policy("edit"), error_handler=handler)
    leaf.add_node(
        "judge", both(bound(op, judge)), cache_policy=policy("judge"), error_handler=handler
    )
    leaf.add_edge(START, "edit")
    leaf.add_edge("edit", "judge")
    leaf.add_edge("judge", END)

    crit = StateGraph(BranchState, output_schema=BranchOutput)
    crit.add_node(
        "critique",
        both(bound(op, critique)),
        cache_policy=policy("critique"),
        error_handler=handler,
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
        "draft", both(bound(op, draft)), cache_policy=policy("draft"), error_handler=handler
    )
    drafts.add_node(
        "judge", both(bound(op, judge)), cache_policy=policy("judge"), error_handler=handler
    )
    drafts.add_node("route", router)
    drafts.add_node("critique_branch", critique_branch)
    drafts.add_edge(START, "draft")
    drafts.add_edge("draft", "route")
    drafts.add_conditional_edges("route", after_draft, ["judge", "critique_branch", END])
    drafts.add_edge("judge", END)
    draft_branch = drafts.compile(name="draft_branch", cache=cache, checkpointer=checkpointer)
    return draft_branch, critique_branch, edit_branch
