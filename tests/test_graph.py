"""The feedit graph against the simulated server: shapes, pipelining, limits, depth, budgets,
faults and judges."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from langgraph_feedit import (
    ConfigError,
    EndpointError,
    NoCandidateError,
    Trace,
    create_feedit_graph,
)
from langgraph_feedit.testing import Fault, SimServer

from .helpers import is_probe, sim_config


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(seed=1) as server:
        yield server


@pytest.fixture
def fresh_sim() -> Iterator[SimServer]:
    with SimServer(seed=2) as server:
        yield server


async def run_graph(config: Any, prompt: str = "Explain CRDTs.", **kw: Any) -> dict[str, Any]:
    graph = create_feedit_graph(config, **kw).compile()
    return await graph.ainvoke({"messages": [("user", prompt)]})


def tree(out: dict[str, Any]) -> Trace:
    return Trace.model_validate(out["trace"])


def check_links(trace: Trace) -> None:
    ids = {n.id: n for n in trace.nodes}
    assert len(ids) == len(trace.nodes), "node ids are unique"
    for n in trace.nodes:
        if n.kind == "draft":
            assert n.parent is None and n.round == 0
        elif n.kind == "critique":
            parent = ids[n.parent or ""]
            assert parent.kind in ("draft", "edit")
            assert n.round == parent.round + 1
        else:
            parent = ids[n.parent or ""]
            assert parent.kind == "critique" and n.round == parent.round


# -- shapes -------------------------------------------------------------------------------------


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    drafts=st.integers(1, 4),
    critiques=st.integers(0, 2),
    edits=st.integers(1, 2),
    rounds=st.integers(0, 3),
    beam=st.integers(1, 3),
)
def test_tree_shape_for_any_size(
    sim: SimServer, drafts: int, critiques: int, edits: int, rounds: int, beam: int
) -> None:
    config = sim_config(
        sim.base_url,
        width={"drafts": drafts, "critiques": critiques, "edits": edits},
        depth={"max_rounds": rounds, "beam": beam},
    )
    trace = tree(asyncio.run(run_graph(config)))
    check_links(trace)
    by_kind = {k: [n for n in trace.nodes if n.kind == k] for k in ("draft", "critique", "edit")}
    assert len(by_kind["draft"]) == drafts
    if critiques == 0 or rounds == 0:
        assert not by_kind["critique"] and not by_kind["edit"]
        assert trace.rounds == 0
    else:
        # Identical drafts (the simulated server answers one request alike) are twins: only
        # the first of them is critiqued.
        distinct = [n for n in by_kind["draft"] if n.duplicate_of is None]
        round1 = [n for n in by_kind["critique"] if n.round == 1]
        assert len(round1) == len(distinct) * critiques
        assert len([n for n in by_kind["edit"] if n.round == 1]) == len(round1) * edits
        assert trace.rounds <= rounds
        for r in range(2, trace.rounds + 1):
            previous = [
                n for n in trace.candidates() if n.round == r - 1 and n.duplicate_of is None
            ]
            best = sorted(previous, key=lambda n: -(n.score or 0.0))[:beam]
            critiqued = {n.parent for n in by_kind["critique"] if n.round == r}
            assert critiqued == {n.id for n in best}
            assert len([n for n in by_kind["critique"] if n.round == r]) == len(best) * critiques
    assert trace.selected in {n.id for n in trace.candidates()}
    assert trace.answer == trace.node(trace.selected or "").text
    scored = [n.score for n in trace.candidates() if n.score is not None]
    assert trace.node(trace.selected or "").score == max(scored, default=None)


@pytest.mark.parametrize(
    ("preset", "drafts", "critiques", "edits", "rounds"),
    [
        ("single", 1, 0, 0, 0),
        ("best-of-n", 4, 0, 0, 0),
        ("feedback-edit", 4, 4, 4, 1),
        ("self-refine", 1, 3, 3, 3),
        ("beam", 4, 8 + 4 + 4, 8 + 4 + 4, 3),
    ],
)
async def test_presets(
    sim: SimServer, preset: str, drafts: int, critiques: int, edits: int, rounds: int
) -> None:
    # Seeded drafts differ (identical ones would be twins, critiqued once).
    config = sim_config(sim.base_url, roles={"draft": {"seed": 0}})
    trace = tree(await run_graph(config, preset=preset))
    kinds = [n.kind for n in trace.nodes]
    assert (kinds.count("draft"), kinds.count("critique"), kinds.count("edit")) == (
        drafts,
        critiques,
        edits,
    )
    assert trace.rounds == rounds
    check_links(trace)


async def test_single_preset_makes_one_call_and_no_judge_call(fresh_sim: SimServer) -> None:
    out = await run_graph(sim_config(fresh_sim.base_url), preset="single")
    assert fresh_sim.call_count == 1
    trace = tree(out)
    assert trace.usage["judge"]["calls"] == 0
    assert out["messages"][-1].content == trace.answer


async def test_trace_round_trips_through_json(sim: SimServer) -> None:
    out = await run_graph(sim_config(sim.base_url, width={"drafts": 2, "critiques": 1}))
    trace = tree(out)
    again = Trace.model_validate_json(trace.model_dump_json())
    assert again == trace
    data = json.loads(trace.model_dump_json())
    assert set(data) >= {"nodes", "selected", "answer", "usage", "wall_s"}
    node_keys = {"id", "kind", "parent", "round", "role", "model", "text", "score", "verdict"}
    assert node_keys | {"usage", "started", "ended", "error"} <= set(data["nodes"][0])
    assert set(data["usage"]) == {"draft", "critique", "edit", "judge", "total"}


async def test_usage_sums_every_call_and_the_message_reports_it(fresh_sim: SimServer) -> None:
    out = await run_graph(
        sim_config(fresh_sim.base_url, width={"drafts": 3, "critiques": 1, "edits": 1})
    )
    trace = tree(out)
    assert trace.usage["total"]["calls"] == fresh_sim.call_count
    sent = sum(r.completion_tokens for r in fresh_sim.requests)
    assert trace.usage["total"]["completion_tokens"] == sent
    meta = out["messages"][-1].usage_metadata
    assert meta["output_tokens"] == sent
    assert meta["input_tokens"] == trace.usage["total"]["prompt_tokens"]
    # siblings share the conversation-then-draft prefix, so the server reports cached tokens
    assert trace.usage["total"]["cached_tokens"] > 0


async def test_conversation_kept_whole(fresh_sim: SimServer) -> None:
    graph = create_feedit_graph(
        sim_config(fresh_sim.base_url, width={"drafts": 1, "critiques": 1, "edits": 1})
    ).compile()
    conversation = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Explain CRDTs."},
    ]
    out = await graph.ainvoke({"messages": conversation})
    trace = tree(out)
    draft_text = trace.node("d0").text
    bodies = [r.body for r in fresh_sim.requests if not is_probe(r.body)]
    for body in bodies:
        sent = [{"role": m["role"], "content": m["content"]} for m in body["messages"][:4]]
        assert sent == conversation
    critique_body = next(b for b in bodies if len(b["messages"]) == 6)
    assert critique_body["messages"][4] == {"role": "assistant", "content": draft_text}
    assert [m.type for m in out["messages"]] == ["system", "human", "ai", "human", "ai"]


# -- pipelining and limits ----------------------------------------------------------------------


async def test_pipelining_fast_branches_finish_before_a_slow_draft() -> None:
    def latency(body: dict[str, Any]) -> float:
        slow_draft = body.get("seed") == 100 and len(body["messages"]) == 1
        return 1.0 if slow_draft else 0.05

    with SimServer(seed=3, latency_fn=latency) as server:
        config = sim_config(
            server.base_url,
            roles={"draft": {"seed": 100}},
            width={"drafts": 3, "critiques": 1, "edits": 1},
        )
        trace = tree(await run_graph(config))
    slow = trace.node("d0")
    assert slow.ended is not None
    for branch in ("d1", "d2"):
        for n in trace.nodes:
            if n.id.startswith(branch + ".") and n.kind == "edit":
                assert n.ended is not None and n.ended < slow.ended, (n.id, "waited for d0")


async def test_endpoint_limit_never_exceeded_across_concurrent_runs() -> None:
    with SimServer(seed=4, ttft=0.02) as server:
        config = sim_config(
            server.base_url,
            roles={"default": {"max_concurrency": 3}, "draft": {"seed": 0}},
            width={"drafts": 4, "critiques": 1, "edits": 1},
        )
        graph = create_feedit_graph(config).compile()
        await asyncio.gather(*(graph.ainvoke({"messages": [("user", f"q{i}")]}) for i in range(3)))
        assert server.peak_concurrency == 3
        # and one probe of the judge endpoint, which the three runs share
        assert server.call_count == 3 * (4 + 4 + 4 + 4 + 4) + 1


async def test_roles_on_different_endpoints_do_not_block_each_other() -> None:
    with SimServer(seed=5, ttft=0.3) as slow, SimServer(seed=6, ttft=0.01) as quick:
        config = sim_config(
            slow.base_url,
            roles={
                "draft": {"max_concurrency": 1},
                "judge": {"base_url": quick.base_url, "max_concurrency": 4},
            },
            width={"drafts": 3, "critiques": 0},
            depth={"max_rounds": 0},
        )
        await run_graph(config)
        # the judge scored draft 0 while the other drafts still queued on the slow endpoint
        first_judge_start = min(r.started for r in quick.requests)
        last_draft_end = max(r.ended or 0 for r in slow.requests)
        assert first_judge_start < last_draft_end
        assert slow.peak_concurrency == 1


# -- depth, budgets, deadline -------------------------------------------------------------------


async def test_stops_at_stop_score(sim: SimServer) -> None:
    config = sim_config(
        sim.base_url,
        width={"drafts": 2, "critiques": 1, "edits": 1},
        depth={"max_rounds": 4, "stop_score": 0.0},
    )
    trace = tree(await run_graph(config))
    assert trace.stopped == "stop_score"
    assert trace.rounds == 1


async def test_stops_at_max_rounds(sim: SimServer) -> None:
    config = sim_config(
        sim.base_url,
        width={"drafts": 2, "critiques": 1, "edits": 1},
        depth={"max_rounds": 3, "beam": 1, "stop_score": 1e9},  # unreachable
    )
    trace = tree(await run_graph(config))
    assert trace.stopped == "max_rounds"
    assert trace.rounds == 3
    assert len([n for n in trace.nodes if n.round == 3 and n.kind == "edit"]) == 1


async def test_token_budget_ends_the_run_with_the_best_so_far(fresh_sim: SimServer) -> None:
    config = sim_config(
        fresh_sim.base_url,
        width={"drafts": 2, "critiques": 1, "edits": 1},
        depth={"max_rounds": 10, "beam": 1, "stop_score": 1e9},  # unreachable
        budget={"max_tokens": 1500},
    )
    trace = tree(await run_graph(config))
    assert trace.stopped == "budget"
    assert trace.rounds < 10
    assert trace.answer
    # the budget is checked after each call, so the overshoot is at most the calls in flight
    assert trace.usage["total"]["calls"] < 40


async def test_deadline_returns_best_so_far_and_cancels_calls_in_flight() -> None:
    def latency(body: dict[str, Any]) -> float:
        return 0.05 if len(body["messages"]) == 1 else 30.0

    with SimServer(seed=7, latency_fn=latency) as server:
        config = sim_config(
            server.base_url,
            width={"drafts": 2, "critiques": 1, "edits": 1},
            roles={"judge": {"kind": "consensus"}, "draft": {"seed": 0}},
            budget={"deadline_s": 0.8},
        )
        started = asyncio.get_running_loop().time()
        trace = tree(await run_graph(config))
        elapsed = asyncio.get_running_loop().time() - started
        assert elapsed < 5.0
        assert trace.stopped == "deadline"
        assert trace.selected in ("d0", "d1")
        critiques = [n for n in trace.nodes if n.kind == "critique"]
        assert critiques and all("deadline" in (n.error or "") for n in critiques)
        for _ in range(50):
            if server.in_flight == 0:
                break
            await asyncio.sleep(0.05)
        assert server.in_flight == 0
        assert server.disconnects >= 2


# -- faults -------------------------------------------------------------------------------------


async def test_one_failing_branch_is_recorded_and_the_rest_carry_on() -> None:
    with SimServer(seed=8, faults=[Fault("500", rate=1.0, match='"seed":201}')]) as server:
        config = sim_config(
            server.base_url,
            roles={"draft": {"seed": 200}},
            width={"drafts": 3, "critiques": 1, "edits": 1},
        )
        trace = tree(await run_graph(config))
    failed = trace.node("d1")
    assert failed.error and "500" in failed.error and server.base_url in failed.error
    assert not any(n.parent == "d1" for n in trace.nodes)
    assert trace.selected and not trace.selected.startswith("d1")
    assert len(trace.candidates()) == 4


async def test_all_branches_failing_raises_a_clear_error() -> None:
    with SimServer(seed=9, faults=[Fault("500", rate=1.0)]) as server:
        config = sim_config(server.base_url, width={"drafts": 2})
        with pytest.raises(NoCandidateError) as info:
            await run_graph(config)
    text = str(info.value)
    assert "d0" in text and "d1" in text and "status 500" in text


async def test_transient_faults_are_retried(fresh_sim: SimServer) -> None:
    fresh_sim.set_faults([Fault("429", first=2, retry_after=0.01), Fault("drop", first=1)])
    trace = tree(await run_graph(sim_config(fresh_sim.base_url, width={"drafts": 2})))
    assert not any(n.error for n in trace.nodes)


# -- judges -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["reward", "llm", "pairwise", "consensus"])
async def test_each_judge_kind_scores_and_selects(fresh_sim: SimServer, kind: str) -> None:
    config = sim_config(
        fresh_sim.base_url,
        roles={"judge": {"kind": kind}},
        width={"drafts": 3, "critiques": 1, "edits": 1},
    )
    trace = tree(await run_graph(config))
    assert trace.judge == kind
    candidates = trace.candidates()
    assert all(n.score is not None for n in candidates)
    best = max(candidates, key=lambda n: n.score or 0.0)
    assert trace.node(trace.selected or "").score == best.score
    paths = {r.path for r in fresh_sim.requests}
    if kind == "reward":
        assert "/pooling" in paths
    if kind == "consensus":
        assert trace.usage["judge"]["calls"] == 0
    else:
        assert trace.usage["judge"]["calls"] > 0


async def test_ties_go_to_the_first_in_tree_order(sim: SimServer) -> None:
    # identical candidates: consensus gives equal scores; the earliest wins every time
    config = sim_config(
        sim.base_url,
        roles={"judge": {"kind": "consensus"}, "draft": {"seed": 5, "temperature": 0.0}},
        width={"drafts": 3, "critiques": 0},
    )
    trace = tree(await run_graph(config))
    assert trace.selected == "d0"


# -- interfaces and validation ------------------------------------------------------------------


def test_build_time_validation() -> None:
    with pytest.raises(ConfigError, match="unknown preset"):
        create_feedit_graph(preset="nope")
    with pytest.raises(ConfigError, match="template"):
        create_feedit_graph(sim_config("http://127.0.0.1:9/v1", roles={"edit": {"template": "x"}}))

    class Bad(dict[str, Any]):
        __annotations__ = {"messages": list}

    with pytest.raises(ValueError, match="feedit_nodes"):
        create_feedit_graph(sim_config("http://127.0.0.1:9/v1"), state_schema=Bad)


async def test_per_run_context_overrides_width(sim: SimServer) -> None:
    graph = create_feedit_graph(sim_config(sim.base_url), preset="best-of-n").compile()
    out = await graph.ainvoke({"messages": [("user", "q")]}, context={"width": {"drafts": 2}})
    assert len(tree(out).nodes) == 2
    out = await graph.ainvoke({"messages": [("user", "q")]}, context={"preset": "single"})
    assert len(tree(out).nodes) == 1


async def test_a_per_run_preset_is_laid_over_the_configurations_widths(sim: SimServer) -> None:
    """LangGraph Server's context picks a preset the way a ``feedit serve`` model name does."""
    graph = create_feedit_graph(sim_config(sim.base_url, width={"drafts": 3})).compile()
    out = await graph.ainvoke({"messages": [("user", "q")]}, context={"preset": "single"})
    assert len(tree(out).nodes) == 1
    out = await graph.ainvoke({"messages": [("user", "q")]}, context={"preset": "best-of-n"})
    assert len(tree(out).nodes) == 3


async def test_nemotron_verdicts_recorded_and_perfect_drafts_not_edited(
    fresh_sim: SimServer,
) -> None:
    config = sim_config(
        fresh_sim.base_url,
        roles={"critique": {"template": "nemotron"}, "draft": {"seed": 0}},
        width={"drafts": 8, "critiques": 1, "edits": 1},
        depth={"skip_perfect": True},
        # Every call's seed derives from the cache key (or a fresh run key): fixed here, so
        # the critiques' verdicts are the same draw in every run.
        cache_key="nemotron-verdicts",
    )
    trace = tree(await run_graph(config))
    critiques = [n for n in trace.nodes if n.kind == "critique"]
    assert all(
        n.verdict in {"not", "slightly", "partially", "mostly", "perfectly"} for n in critiques
    )
    edited = {n.parent for n in trace.nodes if n.kind == "edit"}
    for n in critiques:
        if n.verdict == "perfectly":
            assert n.skipped == "perfect" and n.id not in edited
        else:
            assert n.id in edited
    assert any(n.verdict == "perfectly" for n in critiques), "seeded: some draft is perfect"


def test_server_graphs_build_for_every_preset() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "graphs" / "presets.py"
    spec = importlib.util.spec_from_file_location("feedit_server_graphs", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    manifest = json.loads((path.parent / "langgraph.json").read_text())
    for name, target in manifest["graphs"].items():
        attr = target.split(":")[1]
        builder = getattr(module, attr)
        compiled = builder.compile()
        assert {"start", "draft_branch", "select", "finish"} <= set(compiled.nodes), name


async def test_a_failed_comparison_fails_the_run_and_resuming_redoes_only_it(
    fresh_sim: SimServer, tmp_path: Any
) -> None:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    fresh_sim.set_faults([Fault("500", rate=1.0, match="[Response A]")])
    config = sim_config(
        fresh_sim.base_url,
        roles={"judge": {"kind": "pairwise"}, "default": {"max_retries": 0}, "draft": {"seed": 0}},
        width={"drafts": 3, "critiques": 1, "edits": 1},
    )
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "c.sqlite")) as saver:
        graph = create_feedit_graph(config).compile(checkpointer=saver)
        thread = {"configurable": {"thread_id": "t"}}
        with pytest.raises(EndpointError, match="status 500"):
            await graph.ainvoke({"messages": [("user", "q")]}, thread)
        branch_calls = [r for r in fresh_sim.requests if "[Response A]" not in json.dumps(r.body)]
        assert len(branch_calls) == 9
        fresh_sim.set_faults([])
        out = await graph.ainvoke(None, thread)
    again = [r for r in fresh_sim.requests if "[Response A]" not in json.dumps(r.body)]
    assert len(again) == 9  # no draft, critique or edit was made twice
    assert tree(out).selected


async def test_a_users_mistake_fails_the_run_naming_it(fresh_sim: SimServer) -> None:
    config = sim_config(
        fresh_sim.base_url,
        roles={"critique": {"api_key_env": "FEEDIT_UNSET_TEST_KEY"}},
        width={"drafts": 1, "critiques": 1},
    )
    with pytest.raises(ConfigError, match="FEEDIT_UNSET_TEST_KEY"):
        await run_graph(config)


async def test_failures_say_their_kind() -> None:
    with SimServer(seed=12, faults=[Fault("slow", rate=1.0, slow_s=5.0)]) as server:
        config = sim_config(
            server.base_url,
            width={"drafts": 2},
            roles={"default": {"timeout": 0.2, "max_retries": 0}},
        )
        with pytest.raises(NoCandidateError) as info:
            await run_graph(config)
        assert info.value.timed_out
        server.set_faults([Fault("500", rate=1.0)])
        with pytest.raises(NoCandidateError) as info:
            await run_graph(config)
        assert not info.value.timed_out
        server.set_faults([Fault("500", rate=1.0, match='"seed":1}')])
        trace = tree(await run_graph(config.merged({"roles": {"draft": {"seed": 0}}})))
    assert trace.node("d1").failure == "backend" and trace.node("d0").failure is None
