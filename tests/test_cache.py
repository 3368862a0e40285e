"""Call reuse through LangGraph's node cache on a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.cache.sqlite import SqliteCache

from langgraph_feedit import Trace, create_feedit_graph
from langgraph_feedit.testing import Fault, SimServer

from .helpers import sim_config


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(seed=51) as server:
        yield server


async def run(sim: SimServer, cache: SqliteCache, **overrides: Any) -> Trace:
    overrides.setdefault("roles", {}).setdefault("draft", {"seed": 7})
    config = sim_config(sim.base_url, **overrides)
    graph = create_feedit_graph(config, cache=cache).compile(cache=cache)
    out = await graph.ainvoke({"messages": [("user", "Explain CRDTs.")]})
    return Trace.model_validate(out["trace"])


def width(drafts: int) -> dict[str, Any]:
    return {"drafts": drafts, "critiques": 1, "edits": 1}


async def test_fewer_drafts_after_more_make_no_new_calls(sim: SimServer, tmp_path: Path) -> None:
    cache = SqliteCache(path=str(tmp_path / "cache.sqlite"))
    big = await run(sim, cache, width=width(8))
    # draft, judge, critique, edit, judge per draft, and the judge endpoint's logprobs probe
    # (once per endpoint: the second run knows what it sends)
    assert sim.call_count == 8 * 5 + 1
    small = await run(sim, cache, width=width(4))
    assert sim.call_count == 8 * 5 + 1
    assert all(n.reused for n in small.nodes)
    assert small.reused == small.usage["total"]
    for n in small.nodes:
        assert n.text == big.node(n.id).text and n.score == big.node(n.id).score


async def test_more_drafts_after_fewer_make_only_the_new_calls(
    sim: SimServer, tmp_path: Path
) -> None:
    cache = SqliteCache(path=str(tmp_path / "cache.sqlite"))
    await run(sim, cache, width=width(4))
    assert sim.call_count == 4 * 5 + 1  # and the judge endpoint's probe, once per endpoint
    big = await run(sim, cache, width=width(8))
    assert sim.call_count == 8 * 5 + 1
    reused = {n.id for n in big.nodes if n.reused}
    assert reused == {n.id for n in big.nodes if int(n.id.split(".")[0][1:]) < 4}
    assert big.reused["calls"] == 4 * 5
    assert big.usage["total"]["calls"] == 8 * 5


async def test_a_new_cache_key_draws_new_samples(sim: SimServer, tmp_path: Path) -> None:
    cache = SqliteCache(path=str(tmp_path / "cache.sqlite"))
    await run(sim, cache, width=width(2))
    await run(sim, cache, width=width(2), cache_key="second draw")
    assert sim.call_count == 2 * 2 * 5 + 1  # and the judge endpoint's probe, once per endpoint


async def test_failures_are_not_cached_and_a_rerun_retries_only_them(
    sim: SimServer, tmp_path: Path
) -> None:
    cache = SqliteCache(path=str(tmp_path / "cache.sqlite"))
    sim.set_faults([Fault("500", rate=1.0, match='"seed":8}')])  # draft d1 fails (seed last)
    first = await run(sim, cache, width=width(3), roles={"default": {"max_retries": 0}})
    assert first.node("d1").error
    before = sim.call_count
    sim.set_faults([])
    second = await run(sim, cache, width=width(3), roles={"default": {"max_retries": 0}})
    assert not any(n.error for n in second.nodes)
    assert sim.call_count - before == 5  # only d1's branch was made again
    assert {n.id for n in second.nodes if not n.reused} == {"d1", "d1.c0", "d1.c0.e0"}


async def test_a_failed_judge_leaves_the_branch_going_unscored(sim: SimServer) -> None:
    sim.set_faults([Fault("500", rate=1.0, match="satisfies this principle")])
    roles = {"default": {"max_retries": 0}, "draft": {"seed": 0}}
    config = sim_config(sim.base_url, width=width(2), roles=roles)
    out = await create_feedit_graph(config).compile().ainvoke({"messages": [("user", "q")]})
    trace = Trace.model_validate(out["trace"])
    assert len(trace.nodes) == 6
    draft = trace.node("d0")
    assert draft.score is None and draft.judge_note and "not scored" in draft.judge_note
    assert trace.selected == "d0"


async def test_cached_calls_never_replay_another_runs_fan_out(
    sim: SimServer, tmp_path: Path
) -> None:
    cache = SqliteCache(path=str(tmp_path / "cache.sqlite"))
    narrow = await run(sim, cache, width={"drafts": 2, "critiques": 1, "edits": 1})
    assert len(narrow.nodes) == 6
    # best-of-n after feedback-edit: the cached drafts must not bring their critiques along
    best = await run(sim, cache, width={"drafts": 2, "critiques": 0, "edits": 1})
    assert [n.id for n in best.nodes] == ["d0", "d1"]
    # wider after narrower: the new critiques and edits are made
    wide = await run(sim, cache, width={"drafts": 2, "critiques": 2, "edits": 2})
    assert len([n for n in wide.nodes if n.kind == "critique"]) == 4
    assert len([n for n in wide.nodes if n.kind == "edit"]) == 8
    assert {n.id for n in wide.nodes if n.reused} == {
        "d0",
        "d0.c0",
        "d0.c0.e0",
        "d1",
        "d1.c0",
        "d1.c0.e0",
    }
    # a spent budget in one run does not stop the branches of the next
    await run(
        sim,
        cache,
        width={"drafts": 2, "critiques": 2, "edits": 2},
        budget={"max_tokens": 50},
        cache_key="b",
    )
    again = await run(sim, cache, width={"drafts": 2, "critiques": 2, "edits": 2}, cache_key="b")
    assert len(again.nodes) == 2 + 4 + 8


async def test_a_changed_template_file_is_not_answered_from_the_cache(
    sim: SimServer, tmp_path: Path
) -> None:
    from langgraph_feedit.prompts import load_templates, template_digest

    # An operator edits the critique and edit templates of a set and restarts: the calls
    # written with the new text are made again, the drafts (no template) are reused.
    templates = tmp_path / "house.toml"
    templates.write_text('base = "generic"\nversion = "1"\n', encoding="utf-8")
    roles = {"default": {"template": str(templates)}, "draft": {"seed": 7}}
    cache = SqliteCache(path=str(tmp_path / "cache.sqlite"))
    await run(sim, cache, width=width(1), roles=roles)
    first = sim.call_count
    critique = load_templates(str(templates)).critique
    templates.write_text(
        f"base = \"generic\"\nversion = \"1\"\ncritique = '''{critique}\nBe brief.'''\n",
        encoding="utf-8",
    )
    load_templates.cache_clear()  # what a restart does
    template_digest.cache_clear()
    second = await run(sim, cache, width=width(1), roles=roles)
    assert second.node("d0").reused
    # critique, its edit and the judges are asked again; the draft is not
    assert not second.node("d0.c0").reused and not second.node("d0.c0.e0").reused
    assert sim.call_count - first == 4
