"""The feedit graph: draft, critique, edit and judge nodes; width by ``Send``, depth by an edge.

Shape (each box a subgraph sent once per branch, so a branch waits only for its own parent)::

    START -> start -> draft_branch x drafts ------------------------------> select -> finish -> END
                      [draft -> judge                               ]         |  ^
                      [      -> critique_branch x critiques         ]         |  |
                      [         [critique -> edit_branch x edits]   ]         v  |
                      [                      [edit -> judge]        ]  critique_branch x beam

Round 1 runs inside each draft's branch, so the critique of draft 1 starts the moment draft 1
ends, and its edits the moment that critique ends; a pointwise judge scores each candidate as
soon as it exists. ``select`` is the only barrier: it ranks the round (comparing judges run
here), then the depth edge stops (``stop_score`` reached, ``max_rounds`` done, deadline or token
budget spent) or sends the best ``beam`` candidates of the round into another round.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_type_hints

from langchain_core.messages import AIMessage, convert_to_openai_messages
from langgraph.cache.base import BaseCache
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Overwrite, Send
from typing_extensions import TypedDict

from langgraph_feedit.branches import branch_graphs, emit, failure_text, rounds_enabled
from langgraph_feedit.calls import BudgetExhausted, RoleCaller, forget_budget, run_budget
from langgraph_feedit.config import ROLE_NAMES, FeeditConfig, resolve_config
from langgraph_feedit.errors import (
    ConfigError,
    FeeditError,
    InputError,
    NoCandidateError,
)
from langgraph_feedit.judges import POINTWISE, rank_round, tree_order
from langgraph_feedit.prompts import load_templates
from langgraph_feedit.state import (
    FeeditInput,
    FeeditOutput,
    FeeditState,
    Trace,
    TraceNode,
    add_usage,
    empty_usage,
    merge_nodes,
)

__all__ = ["FeeditContext", "create_feedit_graph"]


class FeeditContext(TypedDict, total=False):
    """Per-run settings, passed as ``context=`` (or LangGraph Server's run context). Each key
    is laid over the graph's configuration for this run only."""

    preset: str
    width: dict[str, Any]
    depth: dict[str, Any]
    budget: dict[str, Any]
    roles: dict[str, Any]


# -- top-level nodes ----------------------------------------------------------------------------


def _is_candidate(node: Mapping[str, Any]) -> bool:
    return node.get("kind") != "critique" and not node.get("error") and node.get("text") is not None


def _ranked(candidates: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Highest score first; unscored last; ties to the earliest in tree order."""
    return sorted(
        candidates,
        key=lambda n: (n.get("score") is None, -(n.get("score") or 0.0), tree_order(n["id"])),
    )


def _best(candidates: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return _ranked(candidates)[0] if candidates else None


def _make_start(config: FeeditConfig, preset: str | None) -> Any:
    async def start(state: FeeditState, runtime: Runtime[Any]) -> dict[str, Any]:
        """Resolve this run's settings and conversation; reset the tree of an earlier turn."""
        context = runtime.context
        overrides: Mapping[str, Any] | None = None
        if context is not None:
            overrides = context if isinstance(context, Mapping) else dict(vars(context))
        cfg = resolve_config(config, preset=preset, overrides=overrides)
        conversation: list[dict[str, Any]] = convert_to_openai_messages(state["messages"])
        if not conversation:
            raise InputError("the conversation is empty: give at least one user message")
        roles = {r: cfg.role(r).model_dump(exclude_none=True) for r in ROLE_NAMES}
        for r in ("critique", "edit", "judge"):
            load_templates(roles[r].get("template"))  # fail now, not mid-run
        now = time.time()
        run = {
            "key": uuid.uuid4().hex,
            "started": now,
            "deadline_at": None if cfg.budget.deadline_s is None else now + cfg.budget.deadline_s,
            "max_tokens": cfg.budget.max_tokens,
            "conversation": conversation,
            "roles": roles,
            "width": cfg.width.model_dump(),
            "depth": cfg.depth.model_dump(),
            "judge": roles["judge"].get("kind", "llm"),
            "trivial": cfg.width.drafts == 1
            and not rounds_enabled(
                {"width": cfg.width.model_dump(), "depth": cfg.depth.model_dump()}
            ),
            "embedded_model": cfg.embedded_model,
            "cache_key": cfg.cache_key,
            "preset": cfg.preset,
        }
        return {
            "feedit_run": run,
            "feedit_nodes": Overwrite([]),
            "feedit_judge_usage": Overwrite([]),
            "feedit_round": 1 if rounds_enabled(run) else 0,
            "feedit_stopped": None,
            "feedit_next": [],
        }

    return start


def _fan_drafts(state: FeeditState) -> list[Send]:
    run = state["feedit_run"]
    return [
        Send("draft_branch", {"feedit_run": run, "index": i, "round": 0})
        for i in range(run["width"]["drafts"])
    ]


async def select(state: FeeditState, runtime: Runtime[Any]) -> dict[str, Any]:
    """Rank the round, then decide: stop, or carry the best ``beam`` into another round."""
    run = state["feedit_run"]
    rnd = state.get("feedit_round", 0)
    nodes = list(state.get("feedit_nodes", []))
    update: dict[str, Any] = {}
    candidates = [n for n in nodes if _is_candidate(n)]
    budget = run_budget(run)
    if run["judge"] not in POINTWISE and len(candidates) > 1 and not budget.exhausted:
        try:
            ranked = await rank_round(
                run["judge"],
                RoleCaller(run),
                run["conversation"],
                [(n["id"], n["text"]) for n in candidates],
                load_templates(run["roles"]["judge"].get("template")),
            )
        except BudgetExhausted as exc:
            emit(runtime, "judge_failed", {"id": None}, error=failure_text(exc))
        except FeeditError as exc:
            # Without the comparison there is no ground to choose on. Fail the run instead of
            # picking blindly: the tree is in the checkpoint, so resuming the thread once the
            # judge is back (``ainvoke(None, config)``) redoes only this comparison.
            emit(runtime, "judge_failed", {"id": None}, error=failure_text(exc))
            raise
        else:
            scored = [{"id": cid, "score": s} for cid, s in ranked.scores.items()]
            nodes = merge_nodes(nodes, scored)
            candidates = [n for n in nodes if _is_candidate(n)]
            update["feedit_nodes"] = scored
            update["feedit_judge_usage"] = [ranked.usage.as_dict()]
    best = _best(candidates)
    depth = run["depth"]
    stopped: str | None = None
    next_round: list[dict[str, Any]] = []
    if best is None:
        stopped = "no_candidates"
    elif budget.exhausted:
        stopped = budget.reason
    elif depth.get("stop_score") is not None and (best.get("score") or float("-inf")) >= float(
        depth["stop_score"]
    ):
        stopped = "stop_score"
    elif rnd >= depth["max_rounds"] or not rounds_enabled(run):
        stopped = "max_rounds"
    else:
        latest = _ranked([n for n in candidates if n.get("round", 0) == rnd])
        next_round = [{"id": n["id"], "text": n["text"]} for n in latest[: depth["beam"]]]
        if not next_round:
            stopped = "no_candidates"
    emit(
        runtime,
        "round",
        {"id": best["id"] if best else None, "round": rnd},
        best_score=best.get("score") if best else None,
        stopped=stopped,
    )
    update.update(
        feedit_stopped=stopped,
        feedit_next=next_round,
        feedit_round=rnd + 1 if next_round else rnd,
    )
    return update


def _deepen(state: FeeditState) -> list[Send] | str:
    if state.get("feedit_stopped") or not state.get("feedit_next"):
        return "finish"
    run = state["feedit_run"]
    rnd = state["feedit_round"]
    return [
        Send(
            "critique_branch",
            {"feedit_run": run, "parent": parent, "round": rnd, "index": j},
        )
        for parent in state["feedit_next"]
        for j in range(run["width"]["critiques"])
    ]


async def finish(state: FeeditState, runtime: Runtime[Any]) -> dict[str, Any]:
    """Pick the best candidate, append it to the conversation and write the trace."""
    run = state["feedit_run"]
    reused = empty_usage()
    nodes = []
    for raw in state.get("feedit_nodes", []):
        data = dict(raw)
        # A node whose call was made by another run came from the call cache.
        origin, judge_origin = data.pop("origin", None), data.pop("judge_origin", None)
        node = TraceNode.model_validate(data)
        if origin is not None and origin != run["key"]:
            node.reused = True
            reused = add_usage(reused, node.usage)
        if judge_origin is not None and judge_origin != run["key"]:
            reused = add_usage(reused, node.judge_usage)
        nodes.append(node)
    nodes.sort(key=lambda n: tree_order(n.id))
    candidates = [n.model_dump() for n in nodes if n.is_candidate]
    best = _best(candidates)
    forget_budget(run)
    usage: dict[str, Any] = {r: empty_usage() for r in ("draft", "critique", "edit", "judge")}
    for n in nodes:
        usage[n.role] = add_usage(usage.setdefault(n.role, empty_usage()), n.usage)
        usage["judge"] = add_usage(usage["judge"], n.judge_usage)
    for u in state.get("feedit_judge_usage", []):
        usage["judge"] = add_usage(usage["judge"], u)
    total = empty_usage()
    for u in usage.values():
        total = add_usage(total, u)
    usage["total"] = total
    trace = Trace(
        nodes=nodes,
        selected=best["id"] if best else None,
        answer=best["text"] if best else None,
        usage=usage,
        reused=reused,
        wall_s=round(time.time() - run["started"], 6),
        stopped=state.get("feedit_stopped"),
        judge=run["judge"],
        rounds=max((n.round for n in nodes), default=0),
    )
    emit(runtime, "finished", {"id": trace.selected}, wall_s=trace.wall_s)
    if best is None:
        failed = [n for n in nodes if n.error]
        raise NoCandidateError(
            f"no candidate answer: all {len(nodes)} branch(es) failed",
            errors=[f"{n.id}: {n.error}" for n in failed],
            timed_out=bool(failed) and all(n.failure in ("timeout", "deadline") for n in failed),
        )
    message = AIMessage(
        content=trace.answer or "",
        name="feedit",
        response_metadata={
            "feedit": {"selected": trace.selected, "score": best.get("score")},
            "model_name": best.get("model"),
        },
        usage_metadata={
            "input_tokens": total["prompt_tokens"],
            "output_tokens": total["completion_tokens"],
            "total_tokens": total["prompt_tokens"] + total["completion_tokens"],
            "input_token_details": {"cache_read": total["cached_tokens"]},
        },
    )
    return {"messages": [message], "trace": trace.model_dump(mode="json")}


# -- the factory --------------------------------------------------------------------------------

_REQUIRED_KEYS = tuple(get_type_hints(FeeditState, include_extras=True))


def create_feedit_graph(
    config: FeeditConfig | str | Path | None = None,
    *,
    preset: str | None = None,
    state_schema: type[Any] | None = None,
    context_schema: type[Any] | None = None,
    name: str = "feedit",
    cache: BaseCache[Any] | None = None,
) -> StateGraph[Any, Any, Any, Any]:
    """Build the draft-critique-edit-judge graph (uncompiled).

    Args:
        config: a :class:`FeeditConfig`, the path of a TOML/YAML file, or ``None`` for the
            defaults (every role on the embedded endpoint; ``FEEDIT_*`` variables apply).
        preset: ``single``, ``best-of-n``, ``feedback-edit``, ``self-refine`` or ``beam``;
            its width and depth apply where the configuration sets none.
        state_schema: a state that extends :class:`~langgraph_feedit.state.FeeditState`.
        context_schema: a per-run context type (default :class:`FeeditContext`).
        name: the graph's name.
        cache: a LangGraph cache (``SqliteCache``, ``InMemoryCache``, a Redis cache) for call
            reuse. It must be given here, not only to ``compile``: the calls live in the
            branch subgraphs, and LangGraph does not hand a parent's cache down to them.

    Returns:
        A ``StateGraph``; call ``.compile(checkpointer=..., cache=...)`` on it.

    Raises:
        ConfigError: a bad configuration, preset or template, found now rather than mid-run.
        ValueError: ``state_schema`` lacks keys the graph needs.

    Example:
        ```python
        from langgraph_feedit import create_feedit_graph

        graph = create_feedit_graph(preset="feedback-edit").compile()
        out = await graph.ainvoke({"messages": [("user", "Explain CRDTs briefly.")]})
        print(out["messages"][-1].content)
        ```
    """
    if config is None or isinstance(config, str | Path):
        config = FeeditConfig.load(config)
    elif not isinstance(config, FeeditConfig):
        raise ConfigError(f"config must be a FeeditConfig or a file path, not {type(config)}")
    resolved = resolve_config(config, preset=preset)
    for role in ("critique", "edit", "judge"):
        load_templates(resolved.role(role).template)
    if state_schema is not None:
        hints = get_type_hints(state_schema, include_extras=True)
        missing = [k for k in _REQUIRED_KEYS if k not in hints]
        if missing:
            raise ValueError(
                f"state_schema {state_schema.__name__} lacks the key(s) {', '.join(missing)}: "
                "extend langgraph_feedit.FeeditState"
            )
    draft_branch, critique_branch = branch_graphs(cache)
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(
        state_schema or FeeditState,
        context_schema=context_schema or FeeditContext,
        input_schema=FeeditInput,
        output_schema=FeeditOutput,
    )
    builder.add_node("start", _make_start(config, preset))
    builder.add_node("draft_branch", draft_branch)
    builder.add_node("critique_branch", critique_branch)
    builder.add_node("select", select)
    builder.add_node("finish", finish)
    builder.add_edge(START, "start")
    builder.add_conditional_edges("start", _fan_drafts, ["draft_branch"])
    builder.add_edge("draft_branch", "select")
    builder.add_edge("critique_branch", "select")
    builder.add_conditional_edges("select", _deepen, ["critique_branch", "finish"])
    builder.add_edge("finish", END)
    builder.name = name  # type: ignore[attr-defined]
    return builder
