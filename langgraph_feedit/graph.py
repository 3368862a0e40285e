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

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, get_type_hints

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, convert_to_openai_messages
from langchain_core.runnables import RunnableConfig
from langgraph.cache.base import BaseCache
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, Overwrite, Send
from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict

from langgraph_feedit import nodeid
from langgraph_feedit._sync import both, inline
from langgraph_feedit.calls import BudgetExhausted, failure_text
from langgraph_feedit.config import FeeditConfig, resolve_config
from langgraph_feedit.endpoints import ClientSource
from langgraph_feedit.errors import (
    ConfigError,
    FeeditError,
    InputError,
    NoCandidateError,
)
from langgraph_feedit.judges import (
    POINTWISE,
    check_judge,
    discover,
    rank_key,
    rank_round,
    reads_logprobs,
)
from langgraph_feedit.prompts import load_templates
from langgraph_feedit.runs import Operator, bound, find_run, forget_run
from langgraph_feedit.state import (
    FeeditInput,
    FeeditOutput,
    FeeditState,
    NodeDict,
    RunSpec,
    Target,
    is_candidate,
    merge_nodes,
)
from langgraph_feedit.subgraphs import branch_graphs
from langgraph_feedit.tasks import ProbeTask, critique_task, draft_task, edit_task, probe_task
from langgraph_feedit.traces import make_trace
from langgraph_feedit.tracing import emit, message_id, reasoning_details
from langgraph_feedit.twins import twin_updates

__all__ = ["FeeditContext", "create_feedit_graph"]


def _listing_no_keys(schema: dict[str, Any]) -> None:
    # LangGraph Server drops every top-level context key its context schema does not list,
    # silently; it passes a context through whole when the schema lists none. The graph checks
    # the context itself (an unknown key is an error that names it, as in-process), so the
    # schema it shows lists its keys in words only.
    keys = sorted(schema.pop("properties", {}))
    schema.pop("required", None)
    schema["additionalProperties"] = True
    schema["description"] = (
        "Per-run settings laid over the graph's configuration: " + ", ".join(keys) + "."
    )


@with_config(ConfigDict(json_schema_extra=_listing_no_keys))
class FeeditContext(TypedDict, total=False):
    """Per-run settings, passed as ``context=`` (or LangGraph Server's run context). Each key
    is laid over the graph's configuration for this run only: the sections, or the short
    names of ``overrides.FLAT_KEYS`` (``{"drafts": 8}``), one rule in-process and on a server."""

    preset: str
    width: dict[str, Any]
    depth: dict[str, Any]
    budget: dict[str, Any]
    roles: dict[str, Any]
    drafts: int
    critiques: int
    edits: int
    rounds: int
    beam: int
    stop_score: float
    skip_perfect: bool
    judge: str
    deadline: float
    token_budget: int


# -- top-level nodes ----------------------------------------------------------------------------


def _make_start(op: Operator) -> Any:
    async def start(state: FeeditState, runtime: Runtime[Any], config: RunnableConfig) -> Any:
        """Resolve this run's settings and conversation; reset the tree of an earlier turn."""
        cfg = op.resolve(runtime.context)
        conversation: list[dict[str, Any]] = convert_to_openai_messages(state["messages"])
        if not conversation:
            raise InputError("the conversation is empty: give at least one user message")
        for r in ("critique", "edit", "judge"):
            load_templates(cfg.role(r).template)  # fail now, not mid-run
        check_judge(cfg.role("judge"))
        run = op.start(cfg, conversation)  # the deadline counts from here
        return {
            "feedit_spec": run.spec,
            "feedit_nodes": Overwrite([]),
            "feedit_judge_usage": Overwrite([]),
            "feedit_round": 1 if run.config.rounds else 0,
            "feedit_stopped": None,
            "feedit_next": [],
        }

    return start


def _fan_drafts(state: FeeditState) -> list[Send]:
    run = find_run(state["feedit_spec"])
    sends = [Send("draft_branch", draft_task(run.spec, i)) for i in range(run.config.width.drafts)]
    if not run.config.trivial and reads_logprobs(run.caller, run.judge):
        # Beside the drafts (first, so its one token is back before theirs), so the judge
        # knows what its endpoint sends when they are done.
        sends.insert(0, Send("discover", probe_task(run.spec)))
    return sends


async def _discover(
    op: Operator, state: ProbeTask, runtime: Runtime[Any], config: RunnableConfig
) -> Any:
    """Learn whether the judge endpoint sends logprobs (see :func:`judges.discover`)."""
    usage = await discover(op.run(state.get("spec"), runtime.context).caller, config)
    # The probe's cost is the judge's, in this run's trace (the run that made it pays).
    return {"feedit_judge_usage": [usage.as_dict()]} if usage.calls else {}


async def select(
    op: Operator, state: FeeditState, runtime: Runtime[Any], config: RunnableConfig
) -> Any:
    """Rank the round, then decide: stop, or carry the best ``beam`` into another round."""
    run = op.run(state.get("feedit_spec"), runtime.context)
    spec = run.spec
    rnd = state.get("feedit_round", 0)
    nodes = list(state.get("feedit_nodes", []))
    update: FeeditState = {}
    budget = run.budget
    # Identical candidates: the later ones are marked and take the first one's score.
    twins = twin_updates(nodes)
    nodes = merge_nodes(nodes, twins)
    candidates = [n for n in nodes if is_candidate(n)]
    distinct = [n for n in candidates if not n.get("duplicate_of")]
    if run.judge not in POINTWISE and len(distinct) > 1 and not budget.exhausted:
        try:
            ranked = await rank_round(
                run.judge,
                run.caller,
                run.conversation,
                [(n["id"], n.get("text") or "") for n in distinct],
                load_templates(run.caller.settings("judge").template),
                config=config,
            )
        except BudgetExhausted as exc:
            emit(runtime, "judge_failed", {"id": None}, error=failure_text(exc))
        except FeeditError as exc:
            # Without the comparison there is no ground to choose on. Fail the run instead of
            # picking blindly: the tree is in the checkpoint, so resuming the thread once the
            # judge is back (``ainvoke(None, config)``) redoes only this comparison, as a new
            # attempt with a fresh budget.
            emit(runtime, "judge_failed", {"id": None}, error=failure_text(exc))
            forget_run(spec)
            raise
        else:
            scored: list[NodeDict] = [{"id": cid, "score": s} for cid, s in ranked.scores.items()]
            scored += twin_updates(merge_nodes(nodes, scored))
            nodes = merge_nodes(nodes, scored)
            candidates = [n for n in nodes if is_candidate(n)]
            twins = merge_nodes(twins, scored)
            update["feedit_judge_usage"] = [ranked.usage.as_dict()]
    if twins:
        update["feedit_nodes"] = twins
    best = min(candidates, key=rank_key) if candidates else None
    stopped: str | None = None
    next_round: list[Target] = []
    depth = run.config.depth
    stop_score = depth.stop_score
    if best is None:
        stopped = "no_candidates"
    elif budget.exhausted:
        stopped = budget.reason
    elif stop_score is not None and (best.get("score") or float("-inf")) >= stop_score:
        stopped = "stop_score"
    elif rnd >= depth.max_rounds or not run.config.rounds:
        stopped = "max_rounds"
    else:
        latest = sorted(
            (n for n in candidates if n.get("round", 0) == rnd and not n.get("duplicate_of")),
            key=rank_key,
        )
        next_round = [{"id": n["id"], "text": n.get("text") or ""} for n in latest[: depth.beam]]
        if not next_round:
            stopped = "no_candidates"
    emit(
        runtime,
        "round",
        {"id": best["id"] if best else None, "round": rnd},
        best_score=best.get("score") if best else None,
        stopped=stopped,
    )
    update["feedit_stopped"] = stopped
    update["feedit_next"] = next_round
    update["feedit_round"] = rnd + 1 if next_round else rnd
    return update


def _deepen(state: FeeditState) -> list[Send] | str:
    if state.get("feedit_stopped") or not state.get("feedit_next"):
        return "finish"
    run = find_run(state["feedit_spec"])
    rnd = state["feedit_round"]
    return [
        Send("critique_branch", critique_task(run.spec, parent, rnd, j))
        for parent in state["feedit_next"]
        for j in range(run.config.width.critiques)
    ]


def _retries(spec: RunSpec, nodes: Sequence[NodeDict]) -> list[Send]:
    """The branches to send again for the failed calls in ``nodes``: each failed draft,
    critique or edit, with the parent it answered (found in the tree)."""
    by_id = {n["id"]: n for n in nodes}

    def target(node_id: str | None) -> Target | None:
        n = by_id.get(node_id or "")
        if n is None or n.get("error") or n.get("text") is None:
            return None
        return {"id": n["id"], "text": n.get("text") or ""}

    sends: list[Send] = []
    for n in nodes:
        if not n.get("error"):
            continue
        index = nodeid.index(n["id"])
        rnd = n.get("round", 0)
        if n["kind"] == "draft":
            sends.append(Send("draft_branch", draft_task(spec, index)))
        elif n["kind"] == "critique" and (parent := target(n.get("parent"))):
            sends.append(Send("critique_branch", critique_task(spec, parent, rnd, index)))
        elif n["kind"] == "edit" and (crit := target(n.get("parent"))):
            parent = target(by_id[crit["id"]].get("parent"))
            if parent is not None:
                sends.append(Send("edit_branch", edit_task(spec, parent, crit, rnd, index)))
    return sends


async def finish(
    op: Operator, state: FeeditState, runtime: Runtime[Any], config: RunnableConfig
) -> Any:
    """Pick the best candidate, append it to the conversation and write the trace.

    With no candidate at all the run fails. When that failure is resumed (``ainvoke(None,
    config)`` on the thread: a new attempt), the failed calls are sent again instead.
    """
    run = op.run(state.get("feedit_spec"), runtime.context)
    spec = run.spec
    raw_nodes = list(state.get("feedit_nodes", []))
    if not any(is_candidate(n) for n in raw_nodes):
        failed = [n for n in raw_nodes if n.get("error")]
        resumed = all(n.get("attempt") not in (None, run.attempt) for n in failed)
        if failed and resumed and (sends := _retries(spec, raw_nodes)):
            emit(runtime, "retry", {"id": None}, calls=len(sends))
            return Command(goto=sends)
    made = make_trace(run, state, raw_nodes)
    trace, chosen, best, total = made.trace, made.chosen, made.best, made.total
    forget_run(spec)
    emit(runtime, "finished", {"id": trace.selected}, wall_s=trace.wall_s)
    if best is None or chosen is None:
        failed_nodes = [n for n in trace.nodes if n.error]
        raise NoCandidateError(
            f"no candidate answer: all {len(trace.nodes)} branch(es) failed",
            errors=[f"{n.id}: {n.error}" for n in failed_nodes],
            timed_out=bool(failed_nodes)
            and all(n.failure in ("timeout", "deadline") for n in failed_nodes),
        )
    message = AIMessage(
        content=trace.answer or "",
        # The selected call's message id: the ``messages`` stream does not send it again.
        id=message_id(run.key, chosen.get("origin") or run.attempt, best.id),
        # The answer's thinking, where LangChain's chat models put it (``content_blocks``
        # shows it as a reasoning block); the content is the answer alone.
        additional_kwargs={"reasoning_content": best.reasoning} if best.reasoning else {},
        name="feedit",
        response_metadata={
            "feedit": {"selected": trace.selected, "score": best.score},
            "model_name": best.model,
            "finish_reason": best.finish_reason,
        },
        usage_metadata={
            "input_tokens": total.prompt_tokens,
            "output_tokens": total.completion_tokens,
            "total_tokens": total.total_tokens,
            "input_token_details": {"cache_read": total.cached_tokens},
            **reasoning_details(total),
        },
    )
    return {"messages": [message], "trace": trace.model_dump(mode="json")}


# -- the factory --------------------------------------------------------------------------------

_REQUIRED_KEYS = tuple(get_type_hints(FeeditState, include_extras=True))


class FeeditGraph(StateGraph[Any, Any, Any, Any]):
    """The uncompiled feedit graph: a ``StateGraph`` whose ``compile()`` keeps its name."""

    graph_name: str = "feedit"

    def compile(self, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
        return super().compile(*args, name=name or self.graph_name, **kwargs)


def create_feedit_graph(
    config: FeeditConfig | str | Path | None = None,
    *,
    preset: str | None = None,
    state_schema: type[Any] | None = None,
    context_schema: type[Any] | None = None,
    name: str = "feedit",
    cache: BaseCache[Any] | None = None,
    context_allow: Collection[str] | None = None,
    models: Mapping[str, BaseChatModel | str] | None = None,
    clients: Mapping[str, ClientSource] | None = None,
) -> StateGraph[Any, Any, Any, Any]:
    """Build the draft-critique-edit-judge graph (uncompiled).

    Args:
        config: a :class:`FeeditConfig`, the path of a TOML/YAML file, or ``None`` for the
            defaults (every role on the embedded endpoint; ``FEEDIT_*`` variables apply).
        preset: ``single``, ``best-of-n``, ``feedback-edit``, ``self-refine`` or ``beam``;
            its width and depth apply where the configuration sets none.
        state_schema: a state that extends :class:`~langgraph_feedit.state.FeeditState`.
        context_schema: a per-run context type (default :class:`FeeditContext`).
        name: the graph's name (``compile()`` keeps it; LangGraph Server shows it).
        cache: a LangGraph cache (``SqliteCache``, ``InMemoryCache``, a Redis cache) for call
            reuse. It must be given here, not only to ``compile``: the calls live in the
            branch subgraphs, and LangGraph does not hand a parent's cache down to them.
        context_allow: treat each run's ``context`` as untrusted input (as on a shared
            LangGraph Server, where any client sends it): it may set width, depth, budget and
            role sampling, and only the keys listed here beyond that (dotted, ``*`` for any
            role: ``("roles.*.model",)``). ``None`` (the default for graphs you run yourself)
            trusts the context like any other argument.
        models: LangChain chat models by role (``draft``, ``critique``, ``edit``,
            ``judge``, or ``default`` for every role without its own), as objects
            (``ChatOpenAI(...)``, any ``BaseChatModel``) or ``"provider:model"`` strings for
            LangChain's ``init_chat_model``. They are the operator's: a run's context or
            state cannot replace them. See :mod:`langgraph_feedit.chatmodels`.
        clients: your own OpenAI clients, per role (``"default"`` for every role not named):
            an ``openai.AsyncOpenAI`` or ``AsyncAzureOpenAI``, used as given (its base URL,
            key, headers and HTTP client; the role's ``base_url`` and ``api_key_env`` are not
            read), or a function that returns one, called once per event loop (what a graph
            invoked from sync code needs). The package's own retry policy applies (the SDK's
            retries are off on each request); a client is never closed, logged or stored,
            and a run's context or state cannot choose one.

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

        # LangChain chat models as roles
        graph = create_feedit_graph(
            preset="feedback-edit",
            models={"default": ChatOpenAI(model="gpt-4o-mini"), "judge": "openai:gpt-4o"},
        ).compile()
        ```
    """
    if config is None or isinstance(config, str | Path):
        config = FeeditConfig.load(config)
    elif not isinstance(config, FeeditConfig):
        raise ConfigError(f"config must be a FeeditConfig or a file path, not {type(config)}")
    resolved = resolve_config(config, preset=preset)
    for role in ("critique", "edit", "judge"):
        load_templates(resolved.role(role).template)
    check_judge(resolved.role("judge"))
    if state_schema is not None:
        hints = get_type_hints(state_schema, include_extras=True)
        missing = [k for k in _REQUIRED_KEYS if k not in hints]
        if missing:
            raise ValueError(
                f"state_schema {state_schema.__name__} lacks the key(s) {', '.join(missing)}: "
                "extend langgraph_feedit.FeeditState"
            )
    op = Operator(config, preset, context_allow, models, clients)
    draft_branch, critique_branch, edit_branch = branch_graphs(op, cache)
    builder = FeeditGraph(
        state_schema or FeeditState,
        context_schema=context_schema or FeeditContext,
        input_schema=FeeditInput,
        output_schema=FeeditOutput,
    )
    builder.graph_name = name
    builder.add_node("start", both(_make_start(op), name="start"))
    builder.add_node("draft_branch", draft_branch)
    builder.add_node("critique_branch", critique_branch)
    # Only a resumed failure sends single edits from the top (see ``finish``).
    builder.add_node("edit_branch", edit_branch)
    builder.add_node("select", both(bound(op, select)))
    builder.add_node("discover", both(bound(op, _discover)))
    builder.add_node(
        "finish",
        both(bound(op, finish)),
        # The answer's message in ``stream_mode="messages"`` carries the keys every call's
        # does; it is sent there only when its call's tokens were not (a cached call).
        metadata={"feedit_role": "answer", "feedit_kind": "answer", "feedit_id": None},
        destinations=("draft_branch", "critique_branch", "edit_branch", END),
    )
    builder.add_edge(START, "start")
    builder.add_conditional_edges(
        "start", inline(_fan_drafts, trace=True), ["draft_branch", "discover"]
    )
    builder.add_edge("draft_branch", "select")
    builder.add_edge("critique_branch", "select")
    builder.add_edge("edit_branch", "select")
    builder.add_conditional_edges(
        "select", inline(_deepen, trace=True), ["critique_branch", "finish"]
    )
    builder.add_edge("finish", END)
    return builder
