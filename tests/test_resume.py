"""Resuming a run: each attempt has its own deadline and budget, restored calls count as
reused, a resumed failure retries exactly its failed calls, and the run registry holds up."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from langgraph_feedit import create_feedit_graph
from langgraph_feedit.config import resolve_config
from langgraph_feedit.errors import EndpointError, NoCandidateError
from langgraph_feedit.runs import Operator, _active, read_spec
from langgraph_feedit.testing import Fault, SimServer

from .helpers import sim_config

QUESTION = {"messages": [("user", "Explain CRDTs.")]}


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(seed=13) as server:
        yield server


def _judge_calls(sim: SimServer) -> int:
    return sum(1 for r in sim.requests if "[Response A]" in json.dumps(r.body))


@pytest.mark.slow
async def test_resume_gets_a_fresh_deadline_and_counts_restored_calls_as_reused(
    sim: SimServer, tmp_path: Path
) -> None:
    config = sim_config(
        sim.base_url,
        width={"drafts": 3, "critiques": 1, "edits": 1},
        roles={"judge": {"kind": "pairwise"}, "draft": {"seed": 0}},
        budget={"deadline_s": 3.0},
    )
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "cp.sqlite")) as saver:
        graph = create_feedit_graph(config).compile(checkpointer=saver)
        thread = {"configurable": {"thread_id": "t1"}}
        sim.set_faults([Fault("500", rate=1.0, match="[Response A]")])  # the judge is down
        with pytest.raises(EndpointError):
            await graph.ainvoke(QUESTION, thread)
        sim.set_faults([])
        branch_calls = sim.call_count - _judge_calls(sim)
        await asyncio.sleep(3.2)  # the first attempt's deadline has passed
        out = await graph.ainvoke(None, thread)
    trace = out["trace"]
    # The resumed attempt judged (its own deadline), instead of stopping at the old one.
    assert trace["stopped"] == "max_rounds"
    assert sim.call_count - _judge_calls(sim) == branch_calls  # no branch call bought again
    # Every draft, critique and edit came from the first attempt's checkpoint: reused.
    assert all(n["reused"] for n in trace["nodes"])
    branch = {
        k: sum(trace["usage"][r][k] for r in ("draft", "critique", "edit"))
        for k in ("calls", "completion_tokens")
    }
    assert trace["reused"]["calls"] == branch["calls"] == 3 * 3
    assert trace["reused"]["completion_tokens"] == branch["completion_tokens"]


async def test_resumed_failure_retries_exactly_the_failed_calls(
    sim: SimServer, tmp_path: Path
) -> None:
    config = sim_config(
        sim.base_url,
        width={"drafts": 3, "critiques": 1, "edits": 1},
        roles={"draft": {"seed": 0}},
    )
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "cp.sqlite")) as saver:
        graph = create_feedit_graph(config, preset="best-of-n").compile(checkpointer=saver)
        thread = {"configurable": {"thread_id": "t2"}}
        sim.set_faults([Fault("500", rate=1.0)])
        with pytest.raises(NoCandidateError, match="no candidate answer"):
            await graph.ainvoke(QUESTION, thread)
        sim.set_faults([])
        sim.reset_stats()
        out = await graph.ainvoke(None, thread)
        state = await graph.aget_state(thread)
    assert sim.call_count == 3 + 3  # the three drafts again, then their scores
    assert out["trace"]["selected"] in {"d0", "d1", "d2"}
    assert not any(n["error"] for n in out["trace"]["nodes"])
    assert state.next == ()


async def test_failure_of_this_attempt_is_not_retried_in_a_loop(sim: SimServer) -> None:
    config = sim_config(sim.base_url, width={"drafts": 2})
    graph = create_feedit_graph(config, preset="best-of-n").compile()
    sim.set_faults([Fault("500", rate=1.0)])
    with pytest.raises(NoCandidateError):
        await graph.ainvoke(QUESTION)
    # two drafts, each tried 1 + max_retries (2) times, and the judge endpoint's logprobs
    # probe beside them, tried once (a probe is never retried); nothing more
    assert sim.call_count == 2 * 3 + 1


async def test_registry_keeps_active_runs_and_drops_finished_ones(sim: SimServer) -> None:
    config = sim_config(
        sim.base_url,
        width={"drafts": 2},
        roles={"judge": {"kind": "pairwise"}, "draft": {"seed": 0}},
    )
    graph = create_feedit_graph(config, preset="best-of-n").compile()
    before = set(_active)
    await graph.ainvoke(QUESTION)
    assert set(_active) == before  # finished: forgotten
    sim.set_faults([Fault("500", rate=1.0, match="[Response A]")])
    with pytest.raises(EndpointError):
        await graph.ainvoke(QUESTION)
    assert set(_active) == before  # select failed: forgotten too

    # Least recently used eviction: a run in use is kept while thousands of others start.
    op = Operator(config, None, None)
    resolved = resolve_config(config)
    conversation = [{"role": "user", "content": "hi"}]
    run = op.start(resolved, conversation)
    run.budget.spent = 7
    from langgraph_feedit import runs

    for i in range(runs._MAX_ACTIVE + 10):
        op.start(resolved, conversation)
        if i % 1000 == 0:
            assert op.run(run.spec, None) is run  # touched: stays
    assert op.run(run.spec, None) is run and run.budget.spent == 7
    for key in [k for k in _active if k not in before]:
        _active.pop(key, None)


def _old_form(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` as checkpoints written before the spec took the configuration's shape hold it:
    width, depth and budget flattened (the budget's ``max_tokens`` beside each role's), the
    judge's kind under ``judge``."""
    width, depth, budget = spec["width"], spec["depth"], spec["budget"]
    old = {k: spec[k] for k in ("key", "started", "conversation", "endpoints", "cache_key")}
    old["roles"] = {
        r: {k: v for k, v in tuned.items() if k != "kind"} for r, tuned in spec["roles"].items()
    }
    old.update(
        drafts=width["drafts"],
        critiques=width["critiques"],
        edits=width["edits"],
        max_rounds=depth["max_rounds"],
        stop_score=depth["stop_score"],
        beam=depth["beam"],
        skip_perfect=depth["skip_perfect"],
        critique_samples=depth["max_critique_samples"] if depth["skip_perfect"] else 1,
        deadline_s=budget["deadline_s"],
        max_tokens=budget["max_tokens"],
        judge=spec["roles"]["judge"]["kind"],
        trivial=spec["trivial"],
        preset=spec["preset"],
        answer_schema=spec["answer_schema"],
    )
    return old


def test_an_old_form_spec_is_read_into_the_run_settings(sim: SimServer) -> None:
    config = sim_config(sim.base_url, width={"drafts": 3}, roles={"judge": {"kind": "pairwise"}})
    op = Operator(config, None, None)
    spec = dict(op.start(resolve_config(config), [{"role": "user", "content": "hi"}]).spec)
    old = _old_form(spec)
    old.update(key="old-form", drafts=2, max_tokens=123, judge="consensus")
    assert read_spec(old)["budget"]["max_tokens"] == 123
    run = op.run(old, None)
    assert run.config.width.drafts == 2
    assert run.config.budget.max_tokens == run.budget.max_tokens == 123
    assert run.judge == "consensus"
    # The roles' own ``max_tokens`` stay theirs: only the flat one was the budget's.
    assert run.config.role("draft").max_tokens == spec["roles"]["draft"]["max_tokens"]
    _active.pop("old-form", None)


async def test_a_checkpoint_holding_an_old_form_spec_resumes(
    sim: SimServer, tmp_path: Path
) -> None:
    config = sim_config(
        sim.base_url,
        width={"drafts": 2},
        roles={"judge": {"kind": "pairwise"}, "draft": {"seed": 0}},
    )
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "cp.sqlite")) as saver:
        graph = create_feedit_graph(config, preset="best-of-n").compile(checkpointer=saver)
        thread = {"configurable": {"thread_id": "old"}}
        sim.set_faults([Fault("500", rate=1.0, match="[Response A]")])  # the judge is down
        with pytest.raises(EndpointError):
            await graph.ainvoke(QUESTION, thread)
        sim.set_faults([])
        state = await graph.aget_state(thread)
        old = _old_form(state.values["feedit_spec"])
        old["judge"] = "consensus"  # the old key is what the resumed run reads
        await graph.aupdate_state(thread, {"feedit_spec": old}, as_node="draft_branch")
        judged = _judge_calls(sim)
        out = await graph.ainvoke(None, thread)
    trace = out["trace"]
    assert trace["judge"] == "consensus"
    assert trace["selected"] in {"d0", "d1"}
    assert _judge_calls(sim) == judged  # no pairwise judge asked
    assert all(n["reused"] for n in trace["nodes"])  # the drafts came from the checkpoint
